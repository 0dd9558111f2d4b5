"""Datasets, the driver simulator, trainers and evaluation."""
