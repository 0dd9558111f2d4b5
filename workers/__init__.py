"""Perception and inference: frame decoding, the face engine, driver signals, blink detection."""
