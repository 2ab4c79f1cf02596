"""Models: creation and weights, what the suite knows per family, blocks and stages, MindCV fixes."""
