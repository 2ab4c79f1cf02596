"""Lazy reading of a split, in any layout, as a list of image files.

:class:`ImageFiles` keeps only the image paths and int labels; ``__getitem__`` reads one file's
encoded bytes (1-D ``uint8``, not decoded) at access time, so memory is bounded by what the
pipeline holds (about a batch), not by the dataset. Decoding is left to the transforms (MindCV's
``create_transforms`` starts with a decode). The readers of ``tools/datasets/readers/`` find a split's files
and labels, one per layout (``tools.datasets.layouts``).

Every file is checked when the split is opened (:mod:`tools.datasets.image_check`, results remembered per file
by :mod:`tools.datasets.check_cache` when a ``cache_dir`` is given): an unreadable one is
skipped with a warning naming it (``skip_bad``, at most ``max_bad`` per split) or is an error,
and one MindSpore cannot decode (GIF, WebP, ...) is served re-encoded as RGB JPEG.

A file whose bytes are no longer those checked (their CRC-32 differs) is checked again when read; if it
is now unreadable (or cannot be read at all) it is skipped with the same warning, counted against
``max_bad``, and its cache entry dropped. It never reaches MindSpore's decoder, which would stop the
run with a C++ stack or crash: in training (``replace_bad``) the next good image of the split takes its
place, so batches and steps keep their size; in evaluation, whose results are matched to file names, a
placeholder is fed and the pass ends with a one-line error naming the file (:func:`checked_iterator`).
"""
import io
import sys
import threading
import zlib

from tools.core.errors import DataError
from tools.core.fileio import first_line
from tools.datasets.check_cache import check_images, forget
from tools.datasets.image_check import check_image, to_rgb_jpeg_bytes

import mindspore.dataset as ds
import numpy as np
from PIL import Image

COLUMN_NAMES = ["image", "label"]
MAX_BAD = 100


class ImageFiles:
    """Random-access source of ``(encoded image bytes, int32 label)`` over checked image files (or, for
    multi-label data, a float32 multi-hot label vector)."""

    replace_bad = False  # True (training): an image found bad when read is replaced by the next good one

    def __init__(self, paths, labels, class_names, split, skip_bad=True, max_bad=MAX_BAD, cache_dir=None):
        self.class_names = list(class_names)
        self.split, self.skip_bad, self.max_bad, self.cache_dir = split, skip_bad, max_bad, cache_dir
        self.all_paths, self.error, self.gone, self._lock = list(paths), None, set(), threading.Lock()
        checks = check_images(paths, split, cache_dir)
        self.skipped = [(path, reason) for path, (ok, reason, _, _) in zip(paths, checks) if not ok]
        _report_bad(self.skipped, len(paths), split, skip_bad, max_bad)
        kept = [i for i, check in enumerate(checks) if check[0]]
        self.paths = [paths[i] for i in kept]
        self.labels = np.array(labels, dtype=np.float32 if np.ndim(labels) == 2 else np.int32)[kept]  # 2-D: multi-hot
        self.to_convert = {j for j, i in enumerate(kept) if checks[i][2]}
        self.crcs = [checks[i][3] for i in kept]

    def __getitem__(self, index):
        for _ in range(len(self.paths)):
            image = self._read(index)
            if image is not None:
                return image, self.labels[index]
            if not self.replace_bad:
                break
            index = (index + 1) % len(self.paths)
        return _placeholder(), self.labels[index]

    def _read(self, index):
        """The bytes to feed of image ``index``, None when it is (now) unreadable."""
        if index in self.gone:
            return None
        path = self.paths[index]
        try:
            data = np.fromfile(path, dtype=np.uint8)
        except OSError as err:
            return self._drop(index, f"cannot be read ({first_line(err)})")
        crc = zlib.crc32(data)
        if crc != self.crcs[index]:  # changed since the check: check again
            ok, reason, convert = check_image(path)
            if not ok:
                return self._drop(index, reason)
            self.crcs[index] = crc
            self.to_convert.discard(index)
            if convert:
                self.to_convert.add(index)
        return to_rgb_jpeg_bytes(io.BytesIO(data.tobytes())) if index in self.to_convert else data

    def _drop(self, index, reason):
        """Skip image ``index`` from now on (warning, cache entry dropped); set ``error`` past ``max_bad``."""
        path = self.paths[index]
        with self._lock:
            if index in self.gone:
                return None
            self.gone.add(index)
            self.skipped.append((path, reason))
            print(f"warning: skipping {path}: {reason} (it changed after the check)", file=sys.stderr, flush=True)
            if self.cache_dir:
                forget([path], self.split, self.cache_dir, self.all_paths)
            count = f"{len(self.skipped)} of {len(self.all_paths)} images of split '{self.split}' are unreadable"
            if not self.replace_bad:
                self.error = self.error or DataError(f"{path}: {reason} (it changed after split '{self.split}' was "
                                                     "checked; run again to skip it)")
            elif not self.skip_bad:
                self.error = DataError(f"{path}: {reason} ({count}; skip_bad_images: True skips them with a warning)")
            elif len(self.skipped) > self.max_bad:
                self.error = DataError(f"{path}: {reason} ({count}, more than max_bad_images: {self.max_bad})")
            elif len(self.gone) == len(self.paths):
                self.error = DataError(f"{path}: {reason} ({count}: none left)")
        return None

    def __len__(self):
        return len(self.paths)


def checked_iterator(make_iterator, source):
    """``make_iterator`` (a loader's ``create_tuple_iterator``) whose iterators raise ``source.error``, the
    DataError of an image found bad when read, between batches: raised inside the data pipeline it would
    come out as a RuntimeError with MindSpore's C++ stack. A decode failure of the pipeline itself (an
    image the check passed) is a one-line DataError too."""
    def create(*args, **kwargs):
        iterator = make_iterator(*args, **kwargs)
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                break
            except RuntimeError as err:
                raise source.error or _decode_error(err, source.split) from None
            if source.error is not None:
                raise source.error
            yield batch
        if source.error is not None:
            raise source.error
    return create


def _decode_error(err, split):
    """A DataError for MindSpore's "image decode failed" (the file is not named by MindSpore), else ``err``."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip().startswith("[ERROR]")]
    failed = next((line for line in lines if "decode" in line.lower()), None)
    if failed is None:
        return err
    return DataError(f"MindSpore cannot decode an image of split '{split}' that the image check passed "
                     f"({failed.removeprefix('[ERROR]').strip()}); tools/datasets/image_check.py should refuse it: "
                     "please report the file")


_PLACEHOLDER = []


def _placeholder():
    """A 1x1 black JPEG, fed in place of a bad image that has no replacement (the pass then ends in an error)."""
    if not _PLACEHOLDER:
        buffer = io.BytesIO()
        Image.new("RGB", (1, 1)).save(buffer, "JPEG")
        _PLACEHOLDER.append(np.frombuffer(buffer.getvalue(), dtype=np.uint8))
    return _PLACEHOLDER[0]


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

