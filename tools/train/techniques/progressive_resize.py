"""``image_resize_schedule: [[0, 64], [3, 96]]``: progressive resizing (fastai): the training images are cropped to
64 px for the first 3 epochs, then to 96 px; each pair ``[E, S]`` gives the size S from the moment E epochs are
done (the first pair must start at 0).

* **The loader.** One training loader per size (each over its own opening of the training split: a dataset
  node feeds one pipeline), the same images, batches and per-sample augmentation seeds: only the crop size
  differs. The Trainer trains epoch e through the loader of e's size, chosen at the epoch boundary (a callback's
  ``on_epoch_begin``), so a resumed run, at an epoch boundary or mid-epoch (``recovery_interval``), trains each
  epoch at the size the uninterrupted run did: the schedule has no state of its own.
* **The graph.** The train step compiles once per size (GRAPH mode compiles a new graph for a new input shape);
  the lr schedule runs across the switches unchanged.
* **Evaluation.** Validation, the best checkpoint and the later scripts (validate.py, predict.py, export.py read
  ``config.yaml``) use ``image_resize``: training at smaller sizes and testing at ``image_resize`` is FixRes's
  "train low, test high". Every scheduled size is checked against the model before training.
* Not with ``cache_features`` (its cached features have one size).
"""
import argparse

from tools.datasets.loader import build_loader, open_split
from tools.models.factory import check_input_size
from tools.train.callbacks import Callback


def size_at(schedule, epoch):
    """The training size of (1-based) ``epoch``: the last pair whose epochs-done count is below it."""
    return [size for done, size in schedule if done < epoch][-1]


def at_size(cfg, size):
    """A copy of ``cfg`` with ``image_resize`` = ``size`` (what the loader and the input check read)."""
    return argparse.Namespace(**{**vars(cfg), "image_resize": size})


def describe_schedule(schedule, epochs):
    """``epochs 1-3 at 64 px, 4-8 at 96 px`` (the pairs that start within ``epochs``)."""
    starts = [(done, size) for done, size in schedule if done < epochs]
    parts = []
    for index, (done, size) in enumerate(starts):
        end = starts[index + 1][0] if index + 1 < len(starts) else epochs
        parts.append(f"{done + 1}-{end} at {size} px" if end > done + 1 else f"{done + 1} at {size} px")
    return "epochs " + ", ".join(parts)


class ProgressiveResize(Callback):
    """Hands the Trainer the loader of each epoch's size (``loaders``: {size: loader}) at the epoch boundary."""

    def __init__(self, schedule, loaders):
        self.schedule, self.loaders, self.size = schedule, loaders, None

    def on_epoch_begin(self, trainer, epoch):
        size = size_at(self.schedule, epoch)
        trainer.train_loader = self.loaders[size]
        if size != self.size and trainer.is_main:
            print(f"image_resize_schedule: epoch {epoch} trains at {size} px", flush=True)
        self.size = size

    def loader_at(self, epoch):
        return self.loaders[size_at(self.schedule, epoch)]


def resize_callbacks(cfg, network, train_data, train_loader, num_classes, shard):
    """``[ProgressiveResize]`` with ``image_resize_schedule`` set, else ``[]``. ``train_loader`` (over
    ``train_data``, at ``image_resize``) serves that size; every other size gets its own loader."""
    if not cfg.image_resize_schedule:
        return []
    loaders = {cfg.image_resize: train_loader}
    for _, size in cfg.image_resize_schedule:
        if size not in loaders:
            sized = at_size(cfg, size)
            check_input_size(network, sized)
            data = open_split(sized, cfg.train_split, class_names=train_data.class_names, training=True, shard=shard)
            loaders[size] = build_loader(sized, data, num_classes, training=True)
    return [ProgressiveResize(cfg.image_resize_schedule, loaders)]


def plan_line(cfg):
    """image_resize_schedule in the dry-run plan (tools.train.wiring.describe)."""
    return (f"image_resize_schedule: training {describe_schedule(cfg.image_resize_schedule, cfg.epoch_size)}; "
            f"validation at image_resize {cfg.image_resize} px")
