"""Lazy reading of a split, in either layout, as a list of image files.

:class:`ImageFiles` keeps only the image paths and int labels; ``__getitem__`` reads one file's
encoded bytes (1-D ``uint8``, not decoded) at access time, so memory is bounded by what the
pipeline holds (about a batch), not by the dataset. Decoding is left to the transforms (MindCV's
``create_transforms`` starts with a decode). :class:`AnnotationDataset` takes the files of an
Aircraft-layout split (annotation file + ``images/``); ``tools.datasets.readers.folder`` finds those of a split tree.

Every file is checked when the split is opened (:mod:`tools.datasets.image_check`, results remembered per file
by :mod:`tools.datasets.check_cache` when a ``cache_dir`` is given): an unreadable one is
skipped with a warning naming it (``skip_bad``, at most ``max_bad`` per split) or is an error,
and one MindSpore cannot decode (GIF, WebP, ...) is served re-encoded as RGB JPEG.
"""
import os
import sys

from tools.core.errors import DataError
from tools.datasets.check_cache import check_images
from tools.datasets.image_check import to_rgb_jpeg_bytes
from tools.datasets.readers import aircraft as aircraft_layout

import mindspore.dataset as ds
import numpy as np

COLUMN_NAMES = ["image", "label"]
MAX_BAD = 100


class ImageFiles:
    """Random-access source of ``(encoded image bytes, int32 label)`` over checked image files."""

    def __init__(self, paths, labels, class_names, split, skip_bad=True, max_bad=MAX_BAD, cache_dir=None):
        self.class_names = list(class_names)
        checks = check_images(paths, split, cache_dir)
        self.skipped = [(path, reason) for path, (ok, reason, _) in zip(paths, checks) if not ok]
        _report_bad(self.skipped, len(paths), split, skip_bad, max_bad)
        kept = [i for i, (ok, _, _) in enumerate(checks) if ok]
        self.paths = [paths[i] for i in kept]
        self.labels = np.array(labels, dtype=np.int32)[kept]
        self.to_convert = {j for j, i in enumerate(kept) if checks[i][2]}

    def __getitem__(self, index):
        path = self.paths[index]
        image = to_rgb_jpeg_bytes(path) if index in self.to_convert else np.fromfile(path, dtype=np.uint8)
        return image, self.labels[index]

    def __len__(self):
        return len(self.paths)


def _report_bad(bad, total, split, skip_bad, max_bad):
    """A warning per unreadable file and their count, or a DataError when they may not be skipped."""
    if not bad:
        return
    first = f"{bad[0][0]}: {bad[0][1]}"
    count = f"{len(bad)} of {total} images of split '{split}' are unreadable"
    if not skip_bad:
        raise DataError(f"{first} ({count}; skip_bad_images: True skips them with a warning)")
    if len(bad) > max_bad:
        raise DataError(f"{first} ({count}, more than max_bad_images: {max_bad})")
    if len(bad) == total:
        raise DataError(f"{first} ({count}: none left)")
    for path, reason in bad:
        print(f"warning: skipping {path}: {reason}", file=sys.stderr)
    print(f"warning: skipped {len(bad)} unreadable images of split '{split}'; "
          f"using {total - len(bad)} of {total}", file=sys.stderr, flush=True)


class AnnotationDataset(ImageFiles):
    """The image files and labels of an Aircraft-layout split (annotation file + ``images/``)."""

    def __init__(self, data_dir, split, level="variant", class_names=None, skip_bad=True, max_bad=MAX_BAD,
                 cache_dir=None):
        self.annotation_path = aircraft_layout.annotation_file(data_dir, level, split)
        entries = aircraft_layout.read_annotation(self.annotation_path)
        labels = [label for _, label in entries]
        if class_names is None:
            class_names = aircraft_layout.class_names(data_dir, level, labels)
        label_indices = self._label_indices(labels, class_names)
        paths = self._image_paths(data_dir, [image_id for image_id, _ in entries])
        super().__init__(paths, label_indices, class_names, split, skip_bad, max_bad, cache_dir)

    def _label_indices(self, labels, class_names):
        """Labels as indices into ``class_names``."""
        index = {name: i for i, name in enumerate(class_names)}
        unknown = next((label for label in labels if label not in index), None)
        if unknown is not None:
            raise DataError(f"{self.annotation_path}: label '{unknown}' is not one of the class names")
        return [index[label] for label in labels]

    def _image_paths(self, data_dir, image_ids):
        """Image file paths of ``image_ids``; a missing file is an error (checked, not read)."""
        paths = [aircraft_layout.image_path(data_dir, image_id) for image_id in image_ids]
        missing = next((p for p in paths if not os.path.isfile(p)), None)
        if missing is not None:
            raise DataError(f"{self.annotation_path}: image file not found: {missing}")
        return paths


def image_dataset(source, shuffle=True, num_shards=None, shard_id=None, num_parallel_workers=1, num_samples=None,
                  sampler=None, with_index=False):
    """A GeneratorDataset over ``source`` with columns ``image`` (bytes) and ``label`` (and, with
    ``with_index``, ``index``: the sample's position in ``source``, which seeds its augmentation).

    Sharding (``num_shards``/``shard_id``) and ``num_samples`` are GeneratorDataset's own; a ``sampler``
    does its own shuffling and sharding.
    """
    if sampler is not None:
        shuffle = num_shards = shard_id = None
    columns = COLUMN_NAMES + ["index"] if with_index else COLUMN_NAMES
    return ds.GeneratorDataset(_Indexed(source) if with_index else source, column_names=columns, shuffle=shuffle,
                               num_shards=num_shards, shard_id=shard_id, num_parallel_workers=num_parallel_workers,
                               num_samples=num_samples, python_multiprocessing=False, sampler=sampler)


class _Indexed:
    """``source`` with each sample's index as a third column."""

    def __init__(self, source):
        self.source = source

    def __getitem__(self, index):
        return (*self.source[index], np.int64(index))

    def __len__(self):
        return len(self.source)

