"""Linear-probe fast path (``cache_features: True``): the frozen backbone runs once, not every epoch.

With every feature block frozen and its BatchNorm layers in inference mode, the backbone maps an
image to the same features in every epoch, so they are computed once, over the training split with
the evaluation transforms, and only the head trains on them. Given up: training augmentation (one
un-augmented view per image is cached) and any drop-path inside the backbone.
"""
import time
from typing import Any, NamedTuple

from tools.core.errors import UsageError
from tools.datasets.loader import build_loader, open_split
from tools.evaluate.inference import predict_logits
from tools.models.blocks import feature_blocks
from tools.models.stages import split_forward
from tools.train import tasks

import mindspore as ms
import mindspore.dataset as ds
from mindspore import nn


class _PooledFeatures(nn.Cell):
    """The frozen backbone's output averaged over H and W, kept as ``(N, C, 1, 1)``."""

    def __init__(self, backbone):
        super().__init__(auto_prefix=False)
        self.backbone = backbone

    def construct(self, x):
        return self.backbone(x).mean((2, 3), keep_dims=True)


class CachedFeatures(NamedTuple):
    """What the linear probe changes in the wiring: the loader and the cell the head trains with."""

    loader: Any  # batches of cached features and labels
    head: Any  # the cell that trains on them
    seconds: float  # of the one pass over the data (finetune.py's cost, bench/bench_probe.py)


def cached_training(cfg, network, class_names, num_classes, steps, shard=(None, None)):
    """The :class:`CachedFeatures` of a run of ``steps`` batches per epoch: batches shuffled each epoch like
    the training loader (the Trainer seeds the data engine from ``cfg.seed``), as many as of images;
    ``head`` shares its parameters with ``network``, which the Trainer validates and saves."""
    begin = time.perf_counter()
    parts = split_forward(network, len(feature_blocks(network)))
    if parts is None:
        raise UsageError(f"cache_features is not available for {cfg.model} ({type(network).__name__}); "
                         "set cache_features: False")
    backbone, head = parts
    # a dataset node feeds one pipeline only: the training split is opened again
    data = open_split(cfg, cfg.train_split, class_names=class_names, shard=shard)
    features, labels = predict_logits(_PooledFeatures(backbone), build_loader(cfg, data, num_classes, False),
                                      cfg.batch_size)
    print(f"cache_features: {len(labels)} training images through the frozen backbone once in "
          f"{time.perf_counter() - begin:.1f}s; training augmentation is not applied to cached features", flush=True)
    label_type = ms.dtype_to_nptype(tasks.of(cfg).label_type)  # class indices, or multi-hot vectors
    dataset = ds.NumpySlicesDataset((features, labels.astype(label_type)), column_names=["image", "label"],
                                    shuffle=cfg.shuffle, num_samples=cfg.num_samples)
    loader = dataset.batch(cfg.batch_size, drop_remainder=cfg.drop_remainder)
    if loader.get_dataset_size() != steps:
        raise UsageError(f"cache_features: {loader.get_dataset_size()} batches of cached features, "
                         f"{steps} of images; set cache_features: False")
    return CachedFeatures(loader, head, time.perf_counter() - begin)
