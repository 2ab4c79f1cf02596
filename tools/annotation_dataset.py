"""Online reading of an Aircraft-layout split: annotation file + image folder, read lazily.

Unlike reading every image into RAM up front, :class:`AnnotationDataset` keeps only the image
paths and int labels; ``__getitem__`` reads one file's encoded bytes (1-D ``uint8``, not decoded)
at access time, so memory is bounded by what the pipeline holds (about a batch), not by the
dataset. Decoding is left to the transforms (MindCV's ``create_transforms`` starts with a decode).
"""
import os

import mindspore.dataset as ds
import numpy as np

from tools import aircraft_layout
from tools.errors import DataError

COLUMN_NAMES = ["image", "label"]


class AnnotationDataset:
    """Random-access source of ``(encoded image bytes, int32 label)`` for one split."""

    def __init__(self, data_dir, split, level="variant", class_names=None):
        self.annotation_path = aircraft_layout.annotation_file(data_dir, level, split)
        entries = aircraft_layout.read_annotation(self.annotation_path)
        labels = [label for _, label in entries]
        if class_names is None:
            class_names = aircraft_layout.class_names(data_dir, level, labels)
        self.class_names = list(class_names)
        self.labels = self._label_indices(labels)
        self.paths = self._image_paths(data_dir, [image_id for image_id, _ in entries])

    def _label_indices(self, labels):
        """Labels as an int32 array of indices into ``class_names``."""
        index = {name: i for i, name in enumerate(self.class_names)}
        unknown = next((label for label in labels if label not in index), None)
        if unknown is not None:
            raise DataError(f"{self.annotation_path}: label '{unknown}' is not one of the class names")
        return np.array([index[label] for label in labels], dtype=np.int32)

    def _image_paths(self, data_dir, image_ids):
        """Image file paths of ``image_ids``; a missing file is an error (checked, not read)."""
        paths = [aircraft_layout.image_path(data_dir, image_id) for image_id in image_ids]
        missing = next((p for p in paths if not os.path.isfile(p)), None)
        if missing is not None:
            raise DataError(f"{self.annotation_path}: image file not found: {missing}")
        return paths

    def __getitem__(self, index):
        return np.fromfile(self.paths[index], dtype=np.uint8), self.labels[index]

    def __len__(self):
        return len(self.paths)


def create_annotation_dataset(
    data_dir,
    split,
    level="variant",
    class_names=None,
    shuffle=True,
    num_shards=None,
    shard_id=None,
    num_parallel_workers=1,
    num_samples=None,
):
    """Return ``(GeneratorDataset, source)`` with columns ``image`` (bytes) and ``label``.

    Sharding (``num_shards``/``shard_id``) and ``num_samples`` are GeneratorDataset's own.
    """
    source = AnnotationDataset(data_dir, split, level=level, class_names=class_names)
    dataset = ds.GeneratorDataset(
        source,
        column_names=COLUMN_NAMES,
        shuffle=shuffle,
        num_shards=num_shards,
        shard_id=shard_id,
        num_parallel_workers=num_parallel_workers,
        num_samples=num_samples,
        python_multiprocessing=False,
    )
    return dataset, source
