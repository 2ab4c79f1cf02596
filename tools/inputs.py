"""Images to predict: file/folder discovery, up-front readability checks, and a file-list dataset.

The file-list dataset yields ``(encoded bytes, int32 label)`` like the annotation dataset, so MindCV's
eval transforms (which start with a decode) apply unchanged and outputs stay aligned with ``paths``.
"""
import io
import os
import sys

import mindspore.dataset as ds
import numpy as np
from PIL import Image, UnidentifiedImageError

from tools import aircraft_layout as layout
from tools.annotation_dataset import COLUMN_NAMES, AnnotationDataset
from tools.data import SplitData, open_split
from tools.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
NATIVE_FORMATS = ("JPEG", "PNG", "BMP", "TIFF")  # MindSpore's Decode reads these; others go through PNG
UNKNOWN_LABEL = -1


def is_image_name(path):
    return path.lower().endswith(IMAGE_EXTENSIONS)


def find_images(inputs):
    """Files named in ``inputs`` (whatever their extension) and image files under the folders
    (recursive, sorted), in the order given; a path that does not exist is an error."""
    found = []
    for path in inputs:
        if os.path.isfile(path):
            found.append(path)
        elif os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs.sort()
                found += [os.path.join(root, name) for name in sorted(files) if is_image_name(name)]
        else:
            raise DataError(f"input not found: {path}")
    return found


def image_problem(path):
    """Why ``path`` cannot be used as an image (empty, not an image, corrupt, truncated), or None."""
    try:
        if os.path.getsize(path) == 0:
            return "empty file"
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            image.load()  # verify() does not decode: truncated data only shows here
    except UnidentifiedImageError:
        return "not an image file"
    except (OSError, SyntaxError, ValueError) as err:
        return str(err).splitlines()[0] if str(err) else err.__class__.__name__
    return None


def keep_readable(paths, labels=None):
    """``(paths, labels)`` without the unreadable images, each reported as a one-line warning."""
    labels = [UNKNOWN_LABEL] * len(paths) if labels is None else labels
    kept = []
    for path, label in zip(paths, labels):
        problem = image_problem(path)
        if problem:
            print(f"warning: skipping {path}: {problem}", file=sys.stderr)
        else:
            kept.append((path, label))
    if not kept:
        raise DataError(f"none of the {len(paths)} input files is a readable image")
    return [p for p, _ in kept], [label for _, label in kept]


def split_files(cfg, split, class_names=None):
    """``(paths, labels, class_names)`` of every image of ``split`` in either layout, in dataset order.

    Folder layout: class folders in class-index order, then sorted file names (recursive).
    """
    data = open_split(cfg, split, class_names=class_names)  # checks the layout and the class list
    if data.layout == "annotation":
        source = AnnotationDataset(cfg.data_dir, split, level=cfg.label_level, class_names=data.class_names)
        return source.paths, [int(label) for label in source.labels], data.class_names
    paths, labels = [], []
    for index, folder in enumerate(layout.safe_dirnames(data.class_names)):
        class_dir = os.path.join(cfg.data_dir, split, folder)
        found = find_images([class_dir]) if os.path.isdir(class_dir) else []
        paths += found
        labels += [index] * len(found)
    return paths, labels, data.class_names


class FileListSource:
    """Random-access ``(encoded image bytes, int32 label)`` of a list of files.

    Formats MindSpore cannot decode (GIF, WebP) are re-encoded losslessly as PNG.
    """

    def __init__(self, paths, labels):
        self.paths, self.labels = list(paths), np.asarray(labels, dtype=np.int32)

    def __getitem__(self, index):
        data = np.fromfile(self.paths[index], dtype=np.uint8)
        with Image.open(io.BytesIO(data.tobytes())) as image:
            if image.format not in NATIVE_FORMATS:
                buffer = io.BytesIO()
                image.convert("RGB").save(buffer, format="PNG")
                data = np.frombuffer(buffer.getvalue(), dtype=np.uint8)
        return data, self.labels[index]

    def __len__(self):
        return len(self.paths)


def file_list_split(paths, labels, class_names, num_parallel_workers=1):
    """A :class:`SplitData` reading ``paths`` in order (no shuffling), for ``tools.data.build_loader``."""
    dataset = ds.GeneratorDataset(FileListSource(paths, labels), column_names=COLUMN_NAMES, shuffle=False,
                                  num_parallel_workers=num_parallel_workers, python_multiprocessing=False)
    return SplitData(dataset, list(class_names), len(paths), "files", list(paths))
