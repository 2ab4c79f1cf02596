"""The tasks a run can have (``task``: ``single`` = one class per image, ``multilabel`` = a set of labels per image),
one entry per task, as ``tools.datasets.layouts`` is for layouts: the label type, the loss and class weights, the
activation, the validation metrics of a results row and the mixing of labels are read from the entry, so that
the rest of the code has no branch on the task.

An entry says:

* ``name``: its ``task`` value; ``label_sets``: labels are sets (multi-hot vectors, read from list files with
  ``label_delimiter``; the layout table says which layouts can hold them);
* ``label_type``: MindSpore type of the label column (class indices, or multi-hot float vectors);
* ``loss(cfg, class_weights)`` and ``class_weights(setting, labels, num_classes)``;
* ``probabilities(views, temperature=1.0)``: ``(V, N, C)`` logits of V test-time views -> ``(N, C)`` mean
  probabilities (softmax, or sigmoid per class);
* ``columns``: the validation metrics of a results row (results.csv, the epoch line), ``validation(logits,
  labels)`` computes them; ``headline``: the one the training curves plot; ``best_metrics``: ``best_metric``'s
  values;
* ``mix``: ``(cfg, loader, batch_size, num_classes) -> loader``, mixup/cutmix applied after MindCV's
  ``create_loader``, or None when ``create_loader``'s own mixing fits the labels.
"""
from dataclasses import dataclass
from typing import Callable, Optional

from tools.core.config import BEST_METRICS
from tools.evaluate import calibration, metrics, multilabel_metrics
from tools.train import multilabel
from tools.train.techniques.imbalance import resolve_class_weights

import mindspore as ms
import numpy as np
from mindcv.loss import create_loss
from mindspore import Tensor


@dataclass(frozen=True)
class Task:
    name: str
    label_sets: bool
    label_type: object
    loss: Callable
    class_weights: Callable
    probabilities: Callable
    columns: tuple
    validation: Callable
    headline: str
    best_metrics: tuple
    mix: Optional[Callable]


def _single_loss(cfg, class_weights):
    weight = None if class_weights is None else Tensor(class_weights)
    return create_loss(name=cfg.loss, weight=weight, reduction=cfg.reduction, label_smoothing=cfg.label_smoothing,
                       aux_factor=cfg.aux_factor)


def _single_validation(logits, labels):
    result = metrics.summarize(logits, labels)
    return {"val_loss": result["loss"], "top1": result["top1"], "top5": result["top5"],
            "mean_per_class_acc": metrics.mean_per_class_accuracy(labels, logits.argmax(axis=1), logits.shape[1])}


def _multilabel_validation(logits, labels):
    """val_loss (mean BCE), mAP and micro F1 at the default threshold 0.5."""
    result = multilabel_metrics.summarize(multilabel_metrics.sigmoid(logits), labels)
    return {"val_loss": multilabel_metrics.bce_loss(logits, labels), "map": result["map"], "f1": result["micro_f1"]}


def _sigmoid_views(views, temperature=1.0):
    """``(N, C)`` mean over the views of ``sigmoid(logits / temperature)``."""
    return np.mean(multilabel_metrics.sigmoid(np.asarray(views, np.float64) / temperature), axis=0)


SINGLE = Task("single", label_sets=False, label_type=ms.int32, loss=_single_loss,
              class_weights=resolve_class_weights, probabilities=calibration.probabilities,
              columns=("val_loss", "top1", "top5", "mean_per_class_acc"), validation=_single_validation,
              headline="top1", best_metrics=BEST_METRICS["single"], mix=None)
MULTILABEL = Task("multilabel", label_sets=True, label_type=ms.float32, loss=multilabel.build_loss,
                  class_weights=multilabel.positive_weights, probabilities=_sigmoid_views,
                  columns=("val_loss", "map", "f1"), validation=_multilabel_validation, headline="map",
                  best_metrics=BEST_METRICS["multilabel"], mix=multilabel.mix_batches)
TASKS = (SINGLE, MULTILABEL)


def of(cfg):
    """The task entry of ``cfg`` (a hand-made config without the key is single-label)."""
    name = getattr(cfg, "task", SINGLE.name)
    return next(task for task in TASKS if task.name == name)
