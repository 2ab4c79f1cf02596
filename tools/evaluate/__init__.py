"""Evaluation: metrics, calibration, test-time augmentation, exported-model metadata."""
