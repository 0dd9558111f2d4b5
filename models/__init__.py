"""PyTorch networks from the papers in shared/papers (fatigue, AUs, blinks, balancing GAN)."""
