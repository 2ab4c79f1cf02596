"""Unit tests of the table of data layouts (tools/datasets/layouts.py) and the detection that reads it."""
import argparse
import csv
import os
import shutil

from conftest import TINY_CLASSES, demo_image, make_tiny_aircraft
from tools.core.config import option_table
from tools.core.errors import DataError
from tools.datasets import layouts
from tools.datasets.loader import detect_layout, known_splits, open_source

import pytest


def config(data_dir, **values):
    """A resolved config (defaults of every key) with ``values`` set, as the scripts build it."""
    cfg = {key: spec[0] for key, spec in option_table().items()}
    cfg.update(data_dir=str(data_dir), check_cache_dir="off", **values)
    return argparse.Namespace(**cfg)


@pytest.fixture
def root(tmp_path):
    """The data folder, inside the test's own folder (the list layout's images go beside it)."""
    os.makedirs(tmp_path / "data")
    return tmp_path / "data"


def make_folder(root):
    """Split ``train`` of ``root`` as a folder of two class folders (two images each)."""
    for label, name in enumerate(("a_class", "b_class")):
        os.makedirs(root / "train" / name)
        for i in range(2):
            shutil.copy(demo_image(2 * label + i), root / "train" / name / f"{i}.jpg")
    return "train", ["a_class", "b_class"]


def make_list(root):
    """Split ``train`` of ``root`` as ``train.csv`` naming four images by absolute path (their folder, beside
    ``root``, would be a split folder of ``root``)."""
    pics = root.parent / "pics"
    os.makedirs(pics, exist_ok=True)
    rows = []
    for i in range(4):
        shutil.copy(demo_image(i), pics / f"{i}.jpg")
        rows.append((str(pics / f"{i}.jpg"), "cat" if i % 2 else "dog"))
    with open(root / "train.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("image", "label"), *rows])
    return "train", ["cat", "dog"]


def make_annotation(root):
    """Split ``trainval`` of ``root`` in FGVC-Aircraft's layout (one image per class)."""
    make_tiny_aircraft(str(root), per_class={"trainval": 1})
    return "trainval", TINY_CLASSES


MAKERS = {"folder": make_folder, "list": make_list, "annotation": make_annotation}


def test_every_layout_has_a_tiny_folder_here():
    assert set(MAKERS) == set(layouts.NAMES)


@pytest.mark.parametrize("entry", layouts.LAYOUTS, ids=layouts.NAMES)
def test_each_layout_detects_and_opens_its_own_split(root, entry):
    split, classes = MAKERS[entry.name](root)
    cfg = config(root)
    assert [other.name for other in layouts.LAYOUTS if other.found(cfg, split)] == [entry.name]
    assert detect_layout(cfg, split) == entry.name
    assert detect_layout(config(root, dataset_format=entry.name), split) == entry.name
    assert entry.splits(cfg) == [split] and known_splits(cfg) == [split]
    kind, source = open_source(cfg, split)
    assert kind == entry.name and source.class_names == classes and len(source) == len(source.all_paths) > 0


def test_auto_prefers_the_table_order(root):
    make_folder(root)
    make_list(root)
    assert detect_layout(config(root), "train") == "folder"
    assert detect_layout(config(root, dataset_format="list"), "train") == "list"


def test_dataset_format_accepts_the_table_names_and_auto():
    convert = option_table()["dataset_format"][1]
    assert [convert(name) for name in ("auto", *layouts.NAMES)] == ["auto", *layouts.NAMES]
    with pytest.raises(ValueError) as err:
        convert("csv")
    assert str(err.value) == "expected one of " + ", ".join(("auto", *layouts.NAMES))
    assert option_table()["dataset_format"][2] == (
        "(suite) auto, folder (<data_dir>/<split>/<class>/), list (<split>.csv / <split>.txt) or annotation "
        "(images_<level>_<split>.txt)")


@pytest.mark.parametrize("name, message", [
    ("folder", "split folder not found: {root}/train"),
    ("list", "list file not found: {root}/train.csv (or .txt)"),
    ("annotation", "annotation file not found: {root}/images_variant_train.txt"),
])
def test_a_forced_layout_that_is_missing_names_what_it_looked_for(tmp_path, name, message):
    with pytest.raises(DataError) as err:
        detect_layout(config(tmp_path, dataset_format=name), "train")
    assert str(err.value) == message.format(root=tmp_path)


def test_a_split_in_no_layout_names_every_layout_and_the_splits_there(tmp_path):
    make_annotation(tmp_path)
    with pytest.raises(DataError) as err:
        detect_layout(config(tmp_path), "train")
    assert str(err.value) == (
        f"split 'train' not found in {tmp_path}: expected a folder train/, a list file train.csv or train.txt, "
        "or an annotation file images_variant_train.txt; splits there: trainval")
