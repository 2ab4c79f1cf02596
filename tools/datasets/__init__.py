"""Data: reading each layout, checking and caching image files, balance, seeded augmentation, transforms and loaders."""
