"""A multi-label demo dataset made offline from the bundled Fashion-MNIST sample (``data/fashion_mnist``, see
``tools/datasets/demo_data.py``): 2x2 mosaics of its tiles, each labelled with the set of classes it shows.

Each of the four cells of a mosaic is, independently, empty (black) with probability ``empty``, else a tile
drawn at random from the source split; a mosaic's labels are the classes of its tiles (several tiles may share a
class; a mosaic of four empty cells has no label). Train mosaics use the source's ``trainval`` tiles, val
mosaics its ``test`` tiles, so no tile is in both. :func:`make_mosaic_data` writes, in the list layout::

    <out>/images/<split>_<4-digit index>.jpg   RGB JPEG, 2 tiles x 2 tiles (56x56 from 28 px tiles), quality 95
    <out>/train.csv, <out>/val.csv             columns image,label; label = class names joined by ';', sorted
    <out>/classes.txt                          the class names in the source's order
    <out>/README.md                            provenance, the command, counts

``tools/make_mosaic_data.py`` is its command line; ``configs/multilabel_demo.yaml`` trains on it.
"""
import csv
import os
import shlex

from tools.core.errors import DataError, UsageError
from tools.datasets.class_names import CLASSES_FILE, read_names
from tools.datasets.readers.aircraft import IMAGE_EXT, IMAGES_DIR, NAMES_FILES, annotation_file, split_line

import numpy as np
from PIL import Image

DEFAULT_SOURCE = os.path.join("data", "fashion_mnist")
SOURCE_SPLITS = {"train": "trainval", "val": "test"}  # mosaic split -> the source split its tiles come from
LEVEL, GRID, JPEG_QUALITY = "variant", 2, 95


def read_tiles(source, split):
    """``[(tile path, class name)]`` of a source split, in file order."""
    path = annotation_file(source, LEVEL, split)
    if not os.path.isfile(path):
        raise DataError(f"demo data not found: {path} (run tools/make_demo_data.py, or pass --source)")
    with open(path, encoding="utf-8") as f:
        pairs = [split_line(line) for line in f if line.strip()]
    return [(os.path.join(source, IMAGES_DIR, image + IMAGE_EXT), label) for image, label in pairs]


def mosaic(tiles):
    """The 2x2 mosaic of ``tiles`` (``GRID * GRID`` paths, None = an empty cell) as an RGB image."""
    images = [None if path is None else Image.open(path).convert("RGB") for path in tiles]
    side = next((image.size[0] for image in images if image is not None), 28)
    canvas = Image.new("RGB", (GRID * side, GRID * side))
    for cell, image in enumerate(images):
        if image is not None:
            canvas.paste(image.resize((side, side)), ((cell % GRID) * side, (cell // GRID) * side))
    return canvas


def make_split(out, split, tiles, count, empty, rng):
    """Write ``count`` mosaics of ``split``; returns ``[(image path relative to out, sorted labels)]``."""
    rows = []
    for index in range(count):
        chosen = [None if rng.random() < empty else tiles[rng.integers(len(tiles))] for _ in range(GRID * GRID)]
        name = os.path.join(IMAGES_DIR, f"{split}_{index:04d}.jpg")
        mosaic([tile and tile[0] for tile in chosen]).save(os.path.join(out, name), "JPEG", quality=JPEG_QUALITY)
        rows.append((name, sorted({tile[1] for tile in chosen if tile is not None})))
    return rows


def make_mosaic_data(out, source=DEFAULT_SOURCE, train=600, val=200, empty=0.25, seed=0, command=None):
    """Write the mosaic dataset to ``out`` (a new or empty folder); returns ``{"train": n, "val": n}``."""
    if train < 1 or val < 1:
        raise UsageError(f"--train and --val must be at least 1, got {train} and {val}")
    if not 0 <= empty < 1:
        raise UsageError(f"--empty must be in [0, 1), got {empty}")
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise UsageError(f"--out {out} exists and is not an empty folder; choose a new one")
    class_names = read_names(os.path.join(source, NAMES_FILES[LEVEL]))
    tiles = {split: read_tiles(source, origin) for split, origin in SOURCE_SPLITS.items()}
    os.makedirs(os.path.join(out, IMAGES_DIR))
    rng, counts = np.random.default_rng(seed), {}
    for split, count in (("train", train), ("val", val)):
        rows = make_split(out, split, tiles[split], count, empty, rng)
        with open(os.path.join(out, f"{split}.csv"), "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([("image", "label"), *[(name, ";".join(labels)) for name, labels in rows]])
        counts[split] = len(rows)
    with open(os.path.join(out, CLASSES_FILE), "w", encoding="utf-8") as f:
        f.writelines(name + "\n" for name in class_names)
    command = command or " ".join(shlex.quote(a) for a in ["python", "tools/make_mosaic_data.py", "--out", out,
                                                            "--train", str(train), "--val", str(val),
                                                            "--empty", str(empty), "--seed", str(seed)])
    with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as f:
        f.write(f"# Fashion-MNIST 2x2 mosaics (multi-label, list layout)\n\nMade from {source} (Fashion-MNIST, MIT "
                f"license, Zalando SE) with:\n\n```\n{command}\n```\n\n{counts['train']} train mosaics (tiles of the "
                f"source's trainval), {counts['val']} val mosaics (tiles of its test split); each cell empty with "
                f"probability {empty}; labels = the classes shown, ';'-separated, in train.csv / val.csv.\n")
    return counts
