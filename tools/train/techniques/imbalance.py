"""Imbalance-aware training: class weights for the cross-entropy, and a class-balanced sampler.

* ``class_weights: balanced`` gives class c the weight ``n / (C * n_c)`` (n training images, C classes,
  n_c images of class c; scikit-learn's "balanced"), so every class contributes as much to the loss as
  in a balanced split. A class without training images gets 0 (it never occurs in a label anyway).
  MindSpore's weighted mean is ``sum(w_y * loss) / sum(w_y)`` over the batch.
* ``sampler: balanced`` draws each epoch ``n`` images with replacement, image i with a probability
  proportional to ``1 / n_{label_i}``: every class is equally likely in every batch.
"""
import math

from tools.core.errors import UsageError

import mindspore.dataset as ds
import numpy as np


def resolve_class_weights(setting, labels, num_classes):
    """The per-class weights ``class_weights`` asks for, as float32, or None (``none``)."""
    if setting is None:
        return None
    if setting == "balanced":
        counts = np.bincount(np.asarray(labels, np.int64), minlength=num_classes)
        weights = np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 0.0)
    else:
        if len(setting) != num_classes:
            raise UsageError(f"class_weights has {len(setting)} weights but the data has {num_classes} classes")
        weights = np.asarray(setting, np.float64)
    return weights.astype(np.float32)


def describe_weights(weights, class_names, shown=5):
    """``T-shirt/top 0.5, Trouser 2, ...`` for a printed plan."""
    items = [f"{name} {w:.3g}" for name, w in zip(class_names, weights)]
    return ", ".join(items[:shown]) + (f", ... ({len(items) - shown} more)" if len(items) > shown else "")


class BalancedSampler:
    """Class-balanced sampling of a training split, sharded for data-parallel training.

    Each epoch's draw comes from the data engine's seed, which the Trainer sets to ``seed + epoch``
    before the epoch, so a resumed run draws the same images and every worker draws the same global
    list; worker ``shard_id`` of ``num_shards`` takes every ``num_shards``-th index of it, so the workers
    share out one draw of ``num_shards * ceil(n / num_shards)`` images without overlap.
    """

    def __init__(self, labels, num_shards=1, shard_id=0):
        labels = np.asarray(labels, np.int64)
        inverse = 1.0 / np.bincount(labels)[labels]
        self.probabilities = inverse / inverse.sum()
        self.num_shards, self.shard_id = num_shards, shard_id
        self.per_shard = math.ceil(len(labels) / num_shards)

    def __iter__(self):
        rng = np.random.default_rng(ds.config.get_seed())
        drawn = rng.choice(len(self.probabilities), size=self.per_shard * self.num_shards, p=self.probabilities)
        return iter(drawn[self.shard_id::self.num_shards].tolist())

    def __len__(self):
        return self.per_shard
