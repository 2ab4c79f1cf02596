"""What training does differently when an image has several labels (``task: multilabel``): the loss, the
class weights and mixup/cutmix; ``tools.train.tasks`` picks them.

* Loss: sigmoid + binary cross-entropy (MindCV's ``BinaryCrossEntropySmooth``) on multi-hot label vectors,
  averaged over every (image, class). ``label_smoothing`` s is binary smoothing, each label being a two-class
  problem: targets ``y (1 - s) + s / 2`` (MindCV's own smoothing would use ``s / classes``, the softmax meaning).
* ``class_weights`` are per-label positive weights (``pos_weight``): a positive of class c counts ``w_c`` times.
  ``balanced``: ``w_c = negatives_c / positives_c`` over the training split (as PyTorch's ``BCEWithLogitsLoss``
  documentation suggests), so positives and negatives of every class weigh the same; 0 for a class without
  positives is replaced by 1 (it never has a positive to weigh).
* mixup/cutmix: MindCV's ``Mixup`` one-hot encodes integer labels (it fails on vectors); :class:`VectorMixup`
  mixes images the same way and the label vectors with the same ``lam``: ``lam y_i + (1 - lam) y_flip(i)``.
"""
from tools.core.errors import UsageError

import numpy as np
from mindcv.data.mixup import Mixup
from mindcv.loss.binary_cross_entropy_smooth import BinaryCrossEntropySmooth
from mindspore import Tensor, nn


class MultiLabelBCE(nn.LossBase):
    """Binary cross-entropy with logits against label vectors, with binary label smoothing and ``pos_weight``."""

    def __init__(self, label_smoothing=0.0, pos_weight=None, reduction="mean"):
        super().__init__()
        self.smoothing = label_smoothing
        self.bce = BinaryCrossEntropySmooth(smoothing=0.0, reduction=reduction,
                                            pos_weight=None if pos_weight is None else Tensor(pos_weight))

    def construct(self, logits, labels):
        if self.smoothing > 0:
            labels = labels * (1 - self.smoothing) + self.smoothing / 2
        return self.bce(logits, labels)


def build_loss(cfg, class_weights):
    """The multi-label loss of ``cfg`` (``class_weights``: the per-label positive weights, or None)."""
    return MultiLabelBCE(cfg.label_smoothing, class_weights, cfg.reduction)


def positive_weights(setting, labels, num_classes):
    """The per-label positive weights ``class_weights`` asks for (see the module docstring), float32, or None."""
    if setting is None:
        return None
    if setting == "balanced":
        labels = np.asarray(labels, np.float64)
        positives = labels.sum(axis=0)
        weights = np.where(positives > 0, (len(labels) - positives) / np.maximum(positives, 1), 1.0)
    else:
        if len(setting) != num_classes:
            raise UsageError(f"class_weights has {len(setting)} weights but the data has {num_classes} classes")
        weights = np.asarray(setting, np.float64)
    return weights.astype(np.float32)


class VectorMixup(Mixup):
    """MindCV's ``Mixup`` in its ``batch`` mode (the one ``create_loader`` uses: one lam per batch, same images
    mixing) for batches of label vectors."""

    def __call__(self, x, target):
        lam = self._mix_batch(x)
        target = np.asarray(target, np.float32)
        return x.astype(np.float32), (target * lam + np.flip(target, axis=0) * (1.0 - lam)).astype(np.float32)


def mix_batches(cfg, loader, batch_size, num_classes):
    """``loader`` (batched) with mixup/cutmix applied to images and label vectors, as MindCV's ``create_loader``
    applies its ``Mixup`` to integer labels (only with a batch of more than one image)."""
    if cfg.mixup + cfg.cutmix <= 0 or batch_size <= 1:
        return loader
    mix = VectorMixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, cutmix_minmax=None, prob=cfg.cutmix_prob,
                      switch_prob=0.5, label_smoothing=0.0, num_classes=num_classes)
    return loader.map(operations=mix, input_columns=["image", "label"],
                      num_parallel_workers=cfg.num_parallel_workers)
