"""FGVC-Aircraft's raw layout: annotation files, class-name files and safe folder names.

A data folder in this layout holds ``images/<id>.jpg`` and annotation files
``images_<level>_<split>.txt`` whose lines are ``<id> <label>``; the label may hold spaces and
``/`` (``F-16A/B``), so a line is split on its first space only. The class order of a level
comes from its names file (``variants.txt``, ``families.txt``, ``manufacturers.txt``) when
present, else from the sorted labels.
"""
import os

from tools.core.errors import DataError, UsageError
from tools.core.fileio import read_text_lines

NAMES_FILES = {"variant": "variants.txt", "family": "families.txt", "manufacturer": "manufacturers.txt"}
IMAGES_DIR = "images"
IMAGE_EXT = ".jpg"
CLASSES_FILE = "classes.txt"


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


def read_names(path):
    """Class names from a names file or ``classes.txt``: one per line, blank lines skipped."""
    names = [line.strip() for line in read_text_lines(path) if line.strip()]
    if len(set(names)) != len(names):
        raise DataError(f"{path}: a class name is listed twice")
    return names


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


def safe_dirname(label):
    """A label made usable as a folder name: ``/`` and ``\\`` become ``_`` (``F-16A/B`` -> ``F-16A_B``)."""
    name = label.replace("/", "_").replace("\\", "_")
    if name in (".", ".."):
        name = name.replace(".", "_")
    return name


def safe_dirnames(names):
    """Folder names for ``names``; two names that would share a folder are an error."""
    folders = [safe_dirname(n) for n in names]
    if len(set(folders)) != len(folders):
        clash = next(f for f in folders if folders.count(f) > 1)
        raise DataError(f"two class names map to the same folder name '{clash}'")
    return folders


def image_path(data_dir, image_id):
    return os.path.join(data_dir, IMAGES_DIR, image_id + IMAGE_EXT)
