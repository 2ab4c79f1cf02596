"""Label lists and CSV files: one file per split naming each image and its class.

``<list_dir>/<split>.csv`` has a header row and standard CSV quoting (a label may hold commas, spaces
and ``/``); the image and label columns are ``image_column`` / ``label_column``. ``<list_dir>/<split>.txt``
has lines ``<path> <label>``, the label being the rest of the line after the first space (as in
FGVC-Aircraft's files and MMPretrain's lists). Paths are relative to ``data_dir`` (absolute ones allowed).

A label is a class name, or an integer index: when every label of a split is a non-negative integer
and there is no ``classes.txt``, the classes are ``0 .. max``, of which at least half must have an image
(a stray ``100000000`` among ``0 .. 9`` is a typo, not 100 million classes); with ``<data_dir>/classes.txt``
a label is one of its names or an index into it. Otherwise the classes are the sorted labels.

Multi-label (``task: multilabel``, :func:`read_label_sets`): the label field holds the image's labels separated
by ``label_delimiter`` (``cat;sofa``); an empty field (a txt line with the path alone) is an image with no label
(all negatives). The classes are ``classes.txt`` (a label not in it is an error) or the sorted set of all labels;
labels are names, never indices. A split's labels are then a float32 multi-hot array ``(images, classes)``.
"""
import csv
import os

from tools.core.errors import DataError
from tools.core.fileio import read_text_lines
from tools.datasets.class_names import CLASSES_FILE, read_names
from tools.datasets.image_check import IMAGE_EXTENSIONS
from tools.datasets.readers.aircraft import split_line

import numpy as np

EXTENSIONS = (".csv", ".txt")


def list_file(list_dir, split):
    """The list file of ``split`` in ``list_dir``, or None; both a .csv and a .txt is an error."""
    found = [os.path.join(list_dir, split + ext) for ext in EXTENSIONS]
    found = [path for path in found if os.path.isfile(path)]
    if len(found) > 1:
        raise DataError(f"both {found[0]} and {found[1]} exist: keep one list file for split '{split}'")
    return found[0] if found else None


def available_splits(list_dir):
    """Split names of the list files in ``list_dir``: every ``.csv``, and the ``.txt`` files whose first
    line starts with an image file name (not Aircraft's annotation and names files, nor a README)."""
    if not os.path.isdir(list_dir):
        return []
    names = [n for n in os.listdir(list_dir) if n.endswith(".csv")
             or n.endswith(".txt") and _starts_with_image(os.path.join(list_dir, n))]
    return sorted({os.path.splitext(n)[0] for n in names})


def _starts_with_image(path):
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            first = next((line for line in f if line.strip()), "")
    except OSError:
        return False
    return os.path.splitext(first.strip().partition(" ")[0])[1].lower() in IMAGE_EXTENSIONS


def read_list(path, image_column="image", label_column="label", empty_labels=False):
    """``[(line number, image path as written, label), ...]`` of a list file, in file order.

    A malformed row, an empty image or label (an empty label is allowed with ``empty_labels``), or an image
    listed twice is an error naming file and line.
    """
    lines = read_text_lines(path)
    rows = (_csv_rows(path, lines, image_column, label_column, empty_labels) if path.endswith(".csv")
            else _txt_rows(path, lines, empty_labels))
    seen, entries = {}, []
    for lineno, image, label in rows:
        if image in seen:
            raise DataError(f"{path}:{lineno}: image {image} already listed on line {seen[image]}")
        seen[image] = lineno
        entries.append((lineno, image, label))
    if not entries:
        raise DataError(f"list file has no entries: {path}")
    return entries


def _txt_rows(path, lines, empty_labels=False):
    for lineno, line in enumerate(lines, 1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        image, label = split_line(line)
        if not label and not empty_labels:
            raise DataError(f"{path}:{lineno}: malformed line {line!r} (expected '<image path> <label>')")
        yield lineno, image, label


def _csv_rows(path, lines, image_column, label_column, empty_labels=False):
    reader = csv.reader(lines)
    try:
        header = [name.strip() for name in next(reader)]
        columns = [_column(path, header, name, key) for name, key in
                   ((image_column, "image_column"), (label_column, "label_column"))]
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise DataError(f"{path}:{reader.line_num}: {len(row)} fields, the header has {len(header)}")
            image, label = (row[i].strip() for i in columns)
            if not image or not (label or empty_labels):
                raise DataError(f"{path}:{reader.line_num}: empty {'image' if not image else 'label'} field")
            yield reader.line_num, image, label
    except StopIteration:
        raise DataError(f"list file is empty (no header row): {path}") from None
    except csv.Error as err:
        raise DataError(f"{path}:{reader.line_num}: malformed CSV ({err})") from None


def _column(path, header, name, key):
    if name not in header:
        raise DataError(f"{path}:1: no column '{name}' in the header ({', '.join(header)}); set {key}")
    return header.index(name)


def read_split(data_dir, list_path, image_column="image", label_column="label", class_names=None):
    """``(paths, labels, class_names)`` of a list file; a missing image is an error naming file and line.

    ``class_names`` (the training split's) fixes the class order, else it is found as the module says.
    """
    entries = read_list(list_path, image_column, label_column)
    labels = [label for _, _, label in entries]
    names_path = os.path.join(data_dir, CLASSES_FILE)
    if class_names is None:
        if os.path.isfile(names_path):
            class_names = read_names(names_path)
        elif all(_is_index(label) for label in labels):
            class_names = _numbered_classes(list_path, entries)
        else:
            class_names = sorted(set(labels))
    index = {name: i for i, name in enumerate(class_names)}
    source = names_path if os.path.isfile(names_path) else "the training split"
    label_indices, paths = [], []
    for lineno, image, label in entries:
        if label in index:
            label_indices.append(index[label])
        elif _is_index(label) and int(label) < len(class_names):
            label_indices.append(int(label))
        else:
            raise DataError(f"{list_path}:{lineno}: label '{label}' is neither a class name nor an index below "
                            f"{len(class_names)} (classes: {source})")
        path = os.path.join(data_dir, image)
        if not os.path.lexists(path):
            raise DataError(f"{list_path}:{lineno}: image file not found: {path}")
        paths.append(path)
    return paths, label_indices, class_names


def read_label_sets(data_dir, list_path, delimiter, image_column="image", label_column="label", class_names=None):
    """``(paths, multi-hot float32 labels (images, classes), class_names)`` of a multi-label list file (see the
    module docstring); an empty label between delimiters, a label given twice on a line, a label that is not a
    class of ``classes.txt`` (or of ``class_names``, the training split's) and a missing image are errors naming
    file and line."""
    entries = read_list(list_path, image_column, label_column, empty_labels=True)
    names_path = os.path.join(data_dir, CLASSES_FILE)
    sets = [(lineno, image, _label_set(list_path, lineno, label, delimiter)) for lineno, image, label in entries]
    source = "the training split"
    if class_names is None:
        if os.path.isfile(names_path):
            class_names, source = read_names(names_path), names_path
        else:
            class_names = sorted({name for _, _, names in sets for name in names})
    if not class_names:
        raise DataError(f"{list_path}: no image has a label (a multi-label split needs at least one class)")
    index = {name: i for i, name in enumerate(class_names)}
    paths, multi_hot = [], np.zeros((len(sets), len(class_names)), np.float32)
    for row, (lineno, image, names) in enumerate(sets):
        unknown = next((name for name in names if name not in index), None)
        if unknown is not None:
            raise DataError(f"{list_path}:{lineno}: label '{unknown}' is not a class of {source} "
                            f"({len(class_names)} classes)")
        multi_hot[row, [index[name] for name in names]] = 1.0
        path = os.path.join(data_dir, image)
        if not os.path.lexists(path):
            raise DataError(f"{list_path}:{lineno}: image file not found: {path}")
        paths.append(path)
    return paths, multi_hot, list(class_names)


def _label_set(list_path, lineno, field, delimiter):
    """The labels of one multi-label field, in order; '' is no label."""
    if not field.strip():
        return []
    names = [name.strip() for name in field.split(delimiter)]
    if "" in names:
        raise DataError(f"{list_path}:{lineno}: empty label between delimiters '{delimiter}' in {field!r}")
    twice = next((name for name in names if names.count(name) > 1), None)
    if twice is not None:
        raise DataError(f"{list_path}:{lineno}: label '{twice}' is given twice in {field!r}")
    return names


def _numbered_classes(list_path, entries):
    """``'0' .. 'max'`` of integer labels; an error naming the largest label's line when most would be empty."""
    lineno, _, label = max(entries, key=lambda entry: int(entry[2]))
    count, used = int(label) + 1, len({int(label) for _, _, label in entries})
    if count > 2 * used:
        raise DataError(f"{list_path}:{lineno}: label {label} makes {count} classes (0 .. {label}) of which only "
                        f"{used} have images; integer labels are class indices (name the classes in "
                        f"{CLASSES_FILE} otherwise)")
    return [str(i) for i in range(count)]


def _is_index(label):
    return label.isascii() and label.isdigit()
