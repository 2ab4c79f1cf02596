"""Techniques that plug into the Trainer: freeze_epochs, cached-feature linear probe, imbalance, TensorBoard."""
