"""FGVC-Aircraft's raw layout: annotation files, their names files and images.

A data folder in this layout holds ``images/<id>.jpg`` and annotation files
``images_<level>_<split>.txt`` whose lines are ``<id> <label>``; the label may hold spaces and
``/`` (``F-16A/B``), so a line is split on its first space only. The class order of a level
comes from its names file (``variants.txt``, ``families.txt``, ``manufacturers.txt``) when
present, else from the sorted labels.
"""
import os

from tools.core.errors import DataError, UsageError
from tools.core.fileio import read_text_lines
from tools.datasets.class_names import read_names

NAMES_FILES = {"variant": "variants.txt", "family": "families.txt", "manufacturer": "manufacturers.txt"}
IMAGES_DIR = "images"
IMAGE_EXT = ".jpg"


def check_level(level):
    if level not in NAMES_FILES:
        raise UsageError(f"unknown label level '{level}'; choose one of {', '.join(NAMES_FILES)}")
    return level


def annotation_file(data_dir, level, split):
    """Path of the annotation file of ``split`` at ``level``."""
    return os.path.join(data_dir, f"images_{check_level(level)}_{split}.txt")


def available_splits(data_dir, level):
    """Split names that have an annotation file at ``level`` in ``data_dir``, sorted."""
    prefix, suffix = f"images_{check_level(level)}_", ".txt"
    if not os.path.isdir(data_dir):
        return []
    return sorted(
        name[len(prefix) : -len(suffix)]
        for name in os.listdir(data_dir)
        if name.startswith(prefix) and name.endswith(suffix)
    )


def has_annotations(data_dir, level, split):
    return os.path.isfile(annotation_file(data_dir, level, split))


def read_annotation(path):
    """Return ``[(image_id, label), ...]`` from an annotation file, in file order.

    Blank lines are skipped; a line without both an id and a label is an error naming the
    file and line; so is an image id listed twice.
    """
    if not os.path.isfile(path):
        raise DataError(f"annotation file not found: {path}")
    entries, seen = [], {}
    for lineno, line in enumerate(read_text_lines(path), 1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        image_id, label = split_line(line)
        if not image_id or not label:
            raise DataError(f"{path}:{lineno}: malformed line {line!r} (expected '<image id> <label>')")
        if image_id in seen:
            raise DataError(f"{path}:{lineno}: image id {image_id} already listed on line {seen[image_id]}")
        seen[image_id] = lineno
        entries.append((image_id, label))
    if not entries:
        raise DataError(f"annotation file has no entries: {path}")
    return entries


def split_line(line):
    """``(first word, rest of the line)`` of a ``<id> <label>`` line; the label may hold spaces."""
    first, _, rest = line.strip().partition(" ")
    return first, rest.strip()


def class_names(data_dir, level, labels):
    """Class names of ``level`` in index order: the names file if present, else sorted ``labels``."""
    names_path = os.path.join(data_dir, NAMES_FILES[check_level(level)])
    if not os.path.isfile(names_path):
        return sorted(set(labels))
    names = read_names(names_path)
    unknown = sorted(set(labels) - set(names))
    if unknown:
        raise DataError(f"{names_path}: label '{unknown[0]}' of the annotations is not listed")
    return names


def image_path(data_dir, image_id):
    return os.path.join(data_dir, IMAGES_DIR, image_id + IMAGE_EXT)


def read_split(data_dir, level, split, train_names=None):
    """``(paths, labels, class_names)`` of ``split`` at ``level``; a label outside the class names or a
    missing image is an error naming the annotation file.

    ``train_names`` (the training split's) fixes the class order, else :func:`class_names` finds it.
    """
    path = annotation_file(data_dir, level, split)
    entries = read_annotation(path)
    labels = [label for _, label in entries]
    names = train_names if train_names is not None else class_names(data_dir, level, labels)
    index = {name: i for i, name in enumerate(names)}
    unknown = next((label for label in labels if label not in index), None)
    if unknown is not None:
        raise DataError(f"{path}: label '{unknown}' is not one of the class names")
    paths = [image_path(data_dir, image_id) for image_id, _ in entries]
    missing = next((p for p in paths if not os.path.isfile(p)), None)
    if missing is not None:
        raise DataError(f"{path}: image file not found: {missing}")
    return paths, [index[label] for label in labels], names
