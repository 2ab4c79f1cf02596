"""Datasets and loaders for the layouts a split can have (the table: ``tools.datasets.layouts``).

* folder ("offline" way): ``<data_dir>/<split>/<class folder>/<image>``. Class order:
  ``<data_dir>/classes.txt`` (written by ``tools/split_aircraft.py``, original names such as
  ``F-16A/B``) when present, else the sorted folder names of the training split
  (``tools.datasets.readers.folder``).
* list: ``<list_dir>/<split>.csv`` or ``.txt`` naming each image and its label (``tools.datasets.readers.list_file``).
* annotation ("online" way): FGVC-Aircraft's ``images/`` + ``images_<level>_<split>.txt``
  (``tools.datasets.readers.aircraft``).

Each is read lazily as a checked list of files by ``tools.datasets.image_files`` (unreadable images
skipped with a warning, or an error: ``skip_bad_images``, ``max_bad_images``; checks cached per file by
``tools.datasets.check_cache``), and its class balance is printed (``tools.datasets.class_balance``).

``dataset_format: auto`` picks the first layout of the table that has the split: folder when
``<data_dir>/<split>`` is a folder, else a list file, else annotation.
"""
import sys
from dataclasses import dataclass, field, replace
from typing import List

from tools.core.errors import DataError, UsageError
from tools.datasets import class_balance, layouts
from tools.datasets.check_cache import resolve_dir
from tools.datasets.image_files import ImageFiles, checked_iterator, image_dataset
from tools.datasets.readers.folder import check_data_dir
from tools.datasets.seeded_augment import SeededAugmentation
from tools.train import tasks
from tools.train.techniques.imbalance import BalancedSampler

import mindspore as ms
import mindspore.dataset as ds
import numpy as np
from mindcv.data import create_loader, create_transforms
from mindcv.data.distributed_sampler import RepeatAugSampler
from mindspore.dataset.transforms import TypeCast

_BUILTIN_DATASETS = ("mnist", "cifar10", "cifar100")


@dataclass
class SplitData:
    """A split's dataset with what the rest of the pipeline needs to know about it."""

    dataset: object
    class_names: List[str]
    size: int
    layout: str
    paths: List[str]  # image files in dataset order
    skipped: List = field(default_factory=list)  # (path, reason) of the unreadable images left out
    labels: object = None  # class index of every image of the whole split (not only this worker's shard)
    source: object = None  # the ImageFiles read (its ``error``: an image found bad when read)


class _Subset:
    """Items ``indices`` of ``source``, in that order."""

    def __init__(self, source, indices):
        self.source, self.indices = source, list(indices)

    def __getitem__(self, index):
        return self.source[self.indices[index]]

    def __len__(self):
        return len(self.indices)


def second_pass(cfg, data, indices=None):
    """``data`` (an evaluation split), or its images ``indices``, with a new dataset over the same checked
    images, for another pass beside the first (a MindSpore pipeline node takes one consumer)."""
    if indices is None:
        return replace(data, dataset=image_dataset(data.source, shuffle=False,
                                                   num_parallel_workers=cfg.num_parallel_workers))
    dataset = image_dataset(_Subset(data.source, indices), shuffle=False, num_parallel_workers=cfg.num_parallel_workers)
    return replace(data, dataset=dataset, size=len(indices), paths=[data.paths[i] for i in indices],
                   labels=None if data.labels is None else np.asarray(data.labels)[list(indices)])


def detect_layout(cfg, split):
    """The name of the layout (``tools.datasets.layouts``) of ``split`` of ``cfg.data_dir``, honouring
    ``dataset_format``."""
    if cfg.dataset.lower() in _BUILTIN_DATASETS:
        raise UsageError(f"dataset '{cfg.dataset}' is not supported here: set dataset: '' and point data_dir "
                         "at a folder or annotation dataset")
    check_data_dir(cfg.data_dir)
    if cfg.dataset_format != "auto":
        wanted = layouts.named(cfg.dataset_format)
        if not wanted.found(cfg, split):
            raise DataError(wanted.missing(cfg, split))
        return wanted.name
    found = next((entry for entry in layouts.LAYOUTS if entry.found(cfg, split)), None)
    if found is not None:
        return found.name
    expected = [entry.expected(cfg, split) for entry in layouts.LAYOUTS]
    raise DataError(f"split '{split}' not found in {cfg.data_dir}: expected {', '.join(expected[:-1])}, or "
                    f"{expected[-1]}; splits there: {', '.join(known_splits(cfg)) or 'none'}")


def known_splits(cfg):
    """Split names of ``cfg.data_dir`` in any layout."""
    return sorted({split for entry in layouts.LAYOUTS for split in entry.splits(cfg)})


def open_source(cfg, split, class_names=None):
    """``(layout, ImageFiles)`` of ``split``: the checked file list, before any dataset is built."""
    kind = detect_layout(cfg, split)
    layout, task = layouts.named(kind), tasks.of(cfg)
    if task.label_sets and layout.read_sets is None:
        raise UsageError(f"'task: {task.name}' needs the list layout (<split>.csv or .txt, labels separated by "
                         f"label_delimiter): split '{split}' of {cfg.data_dir} is in the {kind} layout")
    paths, labels, names = (layout.read_sets if task.label_sets else layout.read)(cfg, split, class_names)
    source = ImageFiles(paths, labels, names, split, cfg.skip_bad_images, cfg.max_bad_images,
                        resolve_dir(cfg.check_cache_dir))
    if len(source) == 0:
        raise DataError(f"split '{split}' of {cfg.data_dir} holds no images")
    return kind, source


def report_balance(cfg, split, source):
    """Print the split's class balance (multi-label: images per label, labels per image); warn (stderr) above
    ``imbalance_warn_ratio``."""
    counts = class_balance.class_counts(source.labels, len(source.class_names))
    if source.labels.ndim == 2:  # multi-hot: images per label and labels per image
        print(class_balance.label_set_summary(split, source.labels, source.class_names), flush=True)
    else:
        print(class_balance.summary(split, counts, source.class_names), flush=True)
    warning = class_balance.warning(split, counts, source.class_names, cfg.imbalance_warn_ratio)
    if warning:
        print(warning, file=sys.stderr, flush=True)


class _RepeatAugSampler(RepeatAugSampler):
    """MindCV's repeated-augmentation sampler (``aug_repeats``), drawing each epoch's order from the data
    engine's seed, which the trainer sets to ``seed + epoch`` (MindCV's counts epochs from 0 in every
    process, so a resumed run would replay epoch 1's order). Repeat r of image i is yielded as
    ``r * N + i`` of a ``_Repeats`` view, so that each repeat gets its own augmentation seed."""

    def __iter__(self):
        self.set_epoch(ds.config.get_seed())
        seen = {}
        for i in super().__iter__():
            seen[i] = seen.get(i, -1) + 1
            yield seen[i] * self.dataset_size + i


class _Repeats:
    """``source`` seen ``repeats`` times: item ``r * N + i`` is image i."""

    def __init__(self, source, repeats):
        self.source, self.repeats = source, repeats

    def __getitem__(self, index):
        return self.source[index % len(self.source)]

    def __len__(self):
        return len(self.source) * self.repeats


def open_split(cfg, split, class_names=None, training=False, shard=(None, None)):
    """Open ``split`` of ``cfg.data_dir`` in whichever layout it has.

    ``class_names`` (the training split's) fixes the class order of a validation split;
    ``shard`` is ``(num_shards, shard_id)`` for data-parallel training.
    """
    kind, source = open_source(cfg, split, class_names)
    source.replace_bad = training
    report_balance(cfg, split, source)
    sampler = _training_sampler(cfg, source, shard) if training else None
    repeated = _Repeats(source, cfg.aug_repeats) if training and cfg.aug_repeats > 0 else source
    dataset = image_dataset(repeated, shuffle=cfg.shuffle if training else cfg.eval_shuffle,
                            num_shards=shard[0], shard_id=shard[1], num_parallel_workers=cfg.num_parallel_workers,
                            num_samples=cfg.num_samples if training else None, sampler=sampler, with_index=training)
    return SplitData(dataset, source.class_names, dataset.get_dataset_size(), kind, source.paths, source.skipped,
                     source.labels, source)


def _training_sampler(cfg, source, shard):
    """The class-balanced sampler (``sampler: balanced``) or aug_repeats' sampler, both sharded; None
    otherwise (GeneratorDataset then shuffles and shards)."""
    if cfg.sampler == "balanced":
        return BalancedSampler(source.labels, shard[0] or 1, shard[1] or 0)
    if cfg.aug_repeats > 0:
        return _RepeatAugSampler(len(source), shard[0] or 1, shard[1] or 0, shuffle=cfg.shuffle,
                                 num_repeats=cfg.aug_repeats, selected_round=0)
    return None


def resolve_num_classes(cfg, class_names):
    """``cfg.num_classes`` if it matches the data (or is unset), else a clear error."""
    found = len(class_names)
    if cfg.num_classes is not None and cfg.num_classes != found:
        raise UsageError(f"num_classes is {cfg.num_classes} but {cfg.data_dir} has {found} classes "
                         "(leave num_classes unset to use what the data has)")
    return found


def build_transforms(cfg, training):
    """MindCV's ImageNet-style transforms with the config's augmentation settings."""
    common = dict(dataset_name="", image_resize=cfg.image_resize, interpolation=cfg.interpolation,
                  mean=cfg.mean, std=cfg.std)
    if not training:
        return create_transforms(is_training=False, crop_pct=cfg.crop_pct, **common)
    return create_transforms(
        is_training=True, scale=tuple(cfg.scale), ratio=tuple(cfg.ratio), hflip=cfg.hflip, vflip=cfg.vflip,
        color_jitter=cfg.color_jitter, auto_augment=cfg.auto_augment, re_prob=cfg.re_prob,
        re_scale=tuple(cfg.re_scale), re_ratio=tuple(cfg.re_ratio), re_value=cfg.re_value,
        re_max_attempts=cfg.re_max_attempts, separate=cfg.aug_splits > 0, **common)


def build_loader(cfg, data, num_classes, training, batch_size=None):
    """Decode, augment and batch a split with MindCV's ``create_loader``.

    Training augmentation runs per sample, seeded from (seed, epoch, sample index)
    (``tools.datasets.seeded_augment``; ``aug_splits`` keeps MindCV's own, unseeded, mapping).
    Evaluation keeps every image exactly once: no shuffling, no dropped remainder. Labels are cast to the task's
    label type (``tools.train.tasks``), which also says who mixes them under mixup/cutmix. The loader's iterators
    raise the DataError of an image found bad when read (``tools.datasets.image_files.checked_iterator``).
    """
    dataset, transform, augmentation = data.dataset, build_transforms(cfg, training), None
    if "index" in dataset.get_col_names():
        if training and cfg.aug_splits == 0:
            augmentation = SeededAugmentation(transform, cfg.seed)
            dataset = dataset.map(operations=augmentation, input_columns=["image", "index"],
                                  output_columns=["image"], num_parallel_workers=cfg.num_parallel_workers)
            transform = [TypeCast(ms.float32)]  # create_loader needs an image op; the images are float32 already
        else:
            dataset = dataset.project(["image", "label"])
    task = tasks.of(cfg)
    mixes = training and task.mix is None  # create_loader's mixup one-hot encodes class indices
    try:
        loader = create_loader(
            dataset=dataset, batch_size=batch_size or cfg.batch_size,
            drop_remainder=cfg.drop_remainder if training else False, is_training=training,
            mixup=cfg.mixup if mixes else 0.0, cutmix=cfg.cutmix if mixes else 0.0,
            cutmix_prob=cfg.cutmix_prob, num_classes=num_classes, transform=transform,
            target_transform=TypeCast(task.label_type),
            num_parallel_workers=cfg.num_parallel_workers, separate=training and cfg.aug_splits > 0)
    except (ValueError, AssertionError) as err:
        raise UsageError(f"cannot build the data pipeline: {err}") from None
    if training and task.mix is not None:
        loader = task.mix(cfg, loader, batch_size or cfg.batch_size, num_classes)
    loader.seeded_augmentation = augmentation
    if data.source is not None:
        loader.create_tuple_iterator = checked_iterator(loader.create_tuple_iterator, data.source)
    return loader
