"""tools/make_demo_data.py: the Fashion-MNIST demo in FGVC-Aircraft's raw layout, and the committed copy."""
import gzip
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from conftest import ROOT
from tools.core.errors import DataError, UsageError
from tools.datasets.class_names import read_names
from tools.datasets.demo_data import CLASS_NAMES, DEFAULT_SOURCE, make_demo_data, read_idx
from tools.datasets.readers.aircraft import image_path, read_annotation

import numpy as np
import pytest
from PIL import Image

NAMES = [  # written out on purpose, independent of tools/datasets/demo_data.CLASS_NAMES that it checks
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
COMMITTED = os.path.join(ROOT, "data", "fashion_mnist")
SPLIT_FILES = {
    "trainval": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 0),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 60000),
}
needs_source = pytest.mark.skipif(
    not os.path.isdir(DEFAULT_SOURCE), reason=f"{DEFAULT_SOURCE} missing (apt-get install dataset-fashion-mnist)"
)


def split_entries(data_dir, split):
    return read_annotation(os.path.join(data_dir, f"images_variant_{split}.txt"))


def source_arrays(split):
    """(images, labels) of a split, parsed here independently of the tool."""
    images_name, labels_name, _ = SPLIT_FILES[split]
    with gzip.open(os.path.join(DEFAULT_SOURCE, images_name)) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(os.path.join(DEFAULT_SOURCE, labels_name)) as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return images, labels


def check_layout(data_dir, trainval_per_class, test_per_class, size):
    assert read_names(os.path.join(data_dir, "variants.txt")) == NAMES
    ids = {}
    for split, per_class in (("trainval", trainval_per_class), ("test", test_per_class)):
        entries = split_entries(data_dir, split)
        assert [i for i, _ in entries] == sorted(i for i, _ in entries)
        assert Counter(label for _, label in entries) == {name: per_class for name in NAMES}
        for image_id, _ in entries:
            assert len(image_id) == 7 and image_id.isdigit()
            with Image.open(image_path(data_dir, image_id)) as img:
                assert img.format == "JPEG" and img.mode == "RGB" and img.size == (size, size)
        ids[split] = {i for i, _ in entries}
    assert not ids["trainval"] & ids["test"]
    on_disk = {name[:-4] for name in os.listdir(os.path.join(data_dir, "images"))}
    assert on_disk == ids["trainval"] | ids["test"]
    return ids


def check_pixels(data_dir, size):
    """Every image and label matches its source in the IDX files (id = index in train + t10k)."""
    for split, (_, _, offset) in SPLIT_FILES.items():
        images, labels = source_arrays(split)
        for image_id, label in split_entries(data_dir, split):
            index = int(image_id) - offset
            assert 0 <= index < len(labels)
            assert NAMES[labels[index]] == label
            expected = Image.fromarray(images[index])
            if size != 28:
                expected = expected.resize((size, size), Image.BICUBIC)
            expected = np.asarray(expected, np.float64)
            with Image.open(image_path(data_dir, image_id)) as img:
                got = np.asarray(img, np.float64)
            assert np.allclose(got[..., 0], got[..., 1], atol=3) and np.allclose(got[..., 0], got[..., 2], atol=3)
            assert np.abs(got.mean(axis=2) - expected).mean() < 8, image_id


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("demo") / "fm")
    counts = make_demo_data(out, trainval_per_class=3, test_per_class=2, size=32)
    return out, counts


def test_names_are_the_fashion_mnist_classes():
    assert CLASS_NAMES == NAMES


@needs_source
def test_build_layout_counts_and_sizes(built):
    out, counts = built
    assert counts == {"trainval": 30, "test": 20}
    check_layout(out, 3, 2, 32)
    readme = Path(out, "README.md").read_text(encoding="utf-8")
    assert "Fashion-MNIST" in readme and "MIT" in readme and "Zalando" in readme
    assert "--trainval_per_class 3 --test_per_class 2 --size 32" in readme


@needs_source
def test_build_pixels_and_labels_match_source(built):
    check_pixels(built[0], 32)


@needs_source
def test_rebuild_is_deterministic_and_replaces_old_images(tmp_path):
    out = str(tmp_path / "fm")
    make_demo_data(out, trainval_per_class=2, test_per_class=2, size=28)
    first = {s: split_entries(out, s) for s in SPLIT_FILES}
    keep = Path(out, "images", "notes.txt")
    keep.write_text("not an image of the tool")
    # same seed: the first image per class of the same permutation, a subset of the earlier pick
    make_demo_data(out, trainval_per_class=1, test_per_class=1, size=28)
    for split in SPLIT_FILES:
        again = split_entries(out, split)
        assert len(again) == 10 and set(again) <= set(first[split])
    listed = {i for s in SPLIT_FILES for i, _ in split_entries(out, s)}
    jpgs = {n[:-4] for n in os.listdir(os.path.join(out, "images")) if n.endswith(".jpg")}
    assert jpgs == listed and keep.is_file()
    # a different seed picks other images
    make_demo_data(out, trainval_per_class=1, test_per_class=1, size=28, seed=1)
    assert {i for s in SPLIT_FILES for i, _ in split_entries(out, s)} != listed


def test_refuses_non_empty_folder_of_other_data(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    with pytest.raises(UsageError, match="refusing"):
        make_demo_data(str(user), trainval_per_class=1, test_per_class=1)
    assert os.listdir(user) == ["notes.txt"]
    # FGVC-Aircraft's own raw data also has variants.txt and 7-digit jpgs: must not be touched
    aircraft = tmp_path / "aircraft"
    (aircraft / "images").mkdir(parents=True)
    (aircraft / "variants.txt").write_text("707-320\nA300B4\n")
    (aircraft / "images" / "0034309.jpg").write_bytes(b"jpeg")
    with pytest.raises(UsageError, match="refusing"):
        make_demo_data(str(aircraft), trainval_per_class=1, test_per_class=1)
    assert (aircraft / "images" / "0034309.jpg").read_bytes() == b"jpeg"


def test_bad_counts_and_size_are_usage_errors(tmp_path):
    with pytest.raises(UsageError):
        make_demo_data(str(tmp_path / "a"), trainval_per_class=0)
    with pytest.raises(UsageError):
        make_demo_data(str(tmp_path / "a"), size=0)
    assert not (tmp_path / "a").exists()


def test_missing_source_is_one_line_exit_1(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "tools/make_demo_data.py", "--out", str(out), "--source", str(tmp_path / "nowhere")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "apt-get update && apt-get install -y dataset-fashion-mnist" in lines[0]
    assert not out.exists()


def test_corrupt_idx_files_are_one_line_errors_naming_them(tmp_path):
    good = tmp_path / "labels.gz"
    with gzip.open(good, "wb") as f:
        f.write(b"\x00\x00\x08\x01" + (2).to_bytes(4, "big") + b"\x01\x02")
    assert read_idx(str(good), 1).tolist() == [1, 2]
    bad_magic = tmp_path / "bad-magic.gz"  # a labels (1-D) magic number where images (3-D) are expected
    with gzip.open(bad_magic, "wb") as f:
        f.write(b"\x00\x00\x08\x01" + b"".join(n.to_bytes(4, "big") for n in (1, 1, 2)) + b"\x01\x02")
    with pytest.raises(DataError, match="bad-magic.gz.*magic"):
        read_idx(str(bad_magic), 3)
    short = tmp_path / "short.gz"
    with gzip.open(short, "wb") as f:
        f.write(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"\x01\x02")
    with pytest.raises(DataError, match="short.gz"):
        read_idx(str(short), 1)
    truncated = tmp_path / "truncated.gz"
    truncated.write_bytes(good.read_bytes()[:-6])
    with pytest.raises(DataError, match="truncated.gz") as err:
        read_idx(str(truncated), 1)
    assert "\n" not in str(err.value)
    not_gzip = tmp_path / "plain.gz"
    not_gzip.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="plain.gz"):
        read_idx(str(not_gzip), 1)


def test_committed_demo_data_is_consistent():
    ids = check_layout(COMMITTED, 60, 20, 28)
    assert len(ids["trainval"]) + len(ids["test"]) == 800
    readme = Path(COMMITTED, "README.md").read_text(encoding="utf-8")
    assert "tools/make_demo_data.py --out data/fashion_mnist" in readme


@needs_source
def test_committed_demo_data_matches_source_and_tool(tmp_path):
    check_pixels(COMMITTED, 28)
    out = str(tmp_path / "fm")
    make_demo_data(out, trainval_per_class=60, test_per_class=20, size=28)
    for name in ("images_variant_trainval.txt", "images_variant_test.txt", "variants.txt"):
        assert Path(out, name).read_bytes() == Path(COMMITTED, name).read_bytes(), name
