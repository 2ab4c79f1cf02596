"""Training augmentation that is a function of (seed, epoch, sample index), whatever the worker count.

MindCV's transforms draw from three generators that a data pipeline with several workers shares
between its threads: MindSpore's random ops (crop, flip, colour jitter, erasing) each hold a
generator seeded once per pipeline, so which sample gets which draw depends on the worker count,
and RandAugment/AutoAugment draw from Python's and numpy's global ``random``, so they depend on
thread timing (two identical runs differ). Here the transforms are MindCV's own, run one sample
at a time by a single map op: before each transform, ``mindspore.dataset.config.set_seed`` seeds
all three generators from ``(seed, epoch, index, transform number)`` (a MindSpore random op called
eagerly takes a fresh generator from that seed). One lock keeps two workers from interleaving
seeds, so the transforms of one sample never run in parallel with another's; the decode and the
training step still overlap (cost measured in bench/README.md).
"""
import threading

import mindspore.dataset as ds
import numpy as np

_SEEDING = threading.Lock()


class SeededAugmentation:
    """A map op ``(image, index) -> image`` applying ``transforms`` with per-sample seeds."""

    def __init__(self, transforms, seed):
        self.transforms, self.seed, self.epoch = list(transforms), seed, 0

    def __call__(self, image, index):
        seeds = np.random.SeedSequence([self.seed, self.epoch, int(index)]).generate_state(len(self.transforms))
        with _SEEDING:
            for transform, seed in zip(self.transforms, seeds):
                ds.config.set_seed(int(seed))
                image = transform(image)
        return image


def set_epoch(loader, epoch):
    """Make ``loader``'s next pass draw epoch ``epoch``'s augmentation (no-op for other loaders)."""
    augmentation = getattr(loader, "seeded_augmentation", None)
    if augmentation is not None:
        augmentation.epoch = epoch
