"""Tests of tools/datasets/image_files.py and the Aircraft reader on tiny fake Aircraft-layout folders."""
import io
import os
import shutil
import tracemalloc

from tools.core.errors import DataError
from tools.datasets.image_files import ImageFiles, image_dataset
from tools.datasets.readers import aircraft

import numpy as np
import pytest
from PIL import Image

LABELS = ["F-16A/B", "Cessna 172", "707-320"]
VARIANTS_ORDER = ["Cessna 172", "F-16A/B", "707-320"]  # deliberately not sorted


def write_jpeg(path, seed):
    pixels = np.random.default_rng(seed).integers(0, 256, (24, 30, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def make_layout(root, count=6, split="train", names=None, start=0):
    """Fake folder: ``count`` JPEGs labelled round-robin with LABELS; optional variants.txt."""
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(start, start + count):
        image_id = f"{i:07d}"
        write_jpeg(images / f"{image_id}.jpg", seed=i)
        lines.append(f"{image_id} {LABELS[i % len(LABELS)]}\n")
    (root / f"images_variant_{split}.txt").write_text("".join(lines), encoding="utf-8")
    if names is not None:
        (root / "variants.txt").write_text("".join(n + "\n" for n in names), encoding="utf-8")
    return root


def annotation_files(data_dir, split, class_names=None, **options):
    """The checked ``ImageFiles`` of an annotation split, as tools.datasets.loader.open_source makes them."""
    return ImageFiles(*aircraft.read_split(data_dir, "variant", split, class_names), split, **options)


def create_annotation_dataset(data_dir, split, **options):
    """``(GeneratorDataset, source)`` of an annotation split, as tools.datasets.loader builds them."""
    source = annotation_files(data_dir, split)
    return image_dataset(source, **options), source


def collect(dataset):
    """``[(image bytes, label), ...]`` of one pass over a GeneratorDataset."""
    return [(image.tobytes(), int(label)) for image, label in dataset.create_tuple_iterator(output_numpy=True)]


def test_class_order_follows_variants_file(tmp_path):
    source = annotation_files(make_layout(tmp_path, names=VARIANTS_ORDER), "train")
    assert source.class_names == VARIANTS_ORDER


def test_class_order_sorted_without_names_file(tmp_path):
    source = annotation_files(make_layout(tmp_path), "train")
    assert source.class_names == sorted(LABELS)
    assert "F-16A/B" in source.class_names and "Cessna 172" in source.class_names


def test_explicit_class_names_are_used(tmp_path):
    make_layout(tmp_path, names=VARIANTS_ORDER)
    make_layout(tmp_path, count=3, split="val", start=10)
    train = annotation_files(tmp_path, "train")
    given = list(reversed(train.class_names))
    val = annotation_files(tmp_path, "val", class_names=given)
    assert val.class_names == given
    assert [val.class_names[label] for label in val.labels] == [LABELS[i % 3] for i in range(10, 13)]


def test_items_are_file_bytes_and_int32_labels(tmp_path):
    source = annotation_files(make_layout(tmp_path, names=VARIANTS_ORDER), "train")
    assert len(source) == 6
    assert source.labels.dtype == np.int32
    for i in range(len(source)):
        image, label = source[i]
        assert image.dtype == np.uint8 and image.ndim == 1
        with open(source.paths[i], "rb") as f:
            assert image.tobytes() == f.read()
        assert isinstance(label, np.int32)
        assert source.class_names[label] == LABELS[i % 3]
        assert os.path.basename(source.paths[i]) == f"{i:07d}.jpg"


def test_two_shards_are_disjoint_and_cover_the_dataset(tmp_path):
    make_layout(tmp_path, count=8)
    everything = collect(create_annotation_dataset(tmp_path, "train", shuffle=False)[0])
    shards = [
        collect(create_annotation_dataset(tmp_path, "train", shuffle=False, num_shards=2, shard_id=s)[0])
        for s in (0, 1)
    ]
    assert len(everything) == 8 and [len(s) for s in shards] == [4, 4]
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == sorted(everything)


def test_uneven_shards_are_padded_by_repeating_samples(tmp_path):
    """GeneratorDataset gives every shard the same size: 7 items -> 4 + 4, one repeated."""
    make_layout(tmp_path, count=7)
    shards = [
        collect(create_annotation_dataset(tmp_path, "train", shuffle=False, num_shards=2, shard_id=s)[0])
        for s in (0, 1)
    ]
    assert [len(s) for s in shards] == [4, 4]
    assert len(set(shards[0]) | set(shards[1])) == 7


def test_num_samples_limits_each_shard(tmp_path):
    make_layout(tmp_path, count=8)
    dataset, _ = create_annotation_dataset(tmp_path, "train", num_samples=3, num_shards=2, shard_id=1)
    assert dataset.get_dataset_size() == 3 and len(collect(dataset)) == 3


@pytest.mark.parametrize("is_training", [True, False])
def test_works_with_mindcv_transforms_and_loader(tmp_path, is_training):
    from mindcv.data import create_loader, create_transforms

    make_layout(tmp_path, count=6)
    dataset, source = create_annotation_dataset(tmp_path, "train", shuffle=is_training)
    transform = create_transforms(dataset_name="", image_resize=32, is_training=is_training)
    loader = create_loader(
        dataset,
        batch_size=4,
        is_training=is_training,
        transform=transform,
        num_classes=len(source.class_names),
        num_parallel_workers=1,
    )
    batches = list(loader.create_tuple_iterator(output_numpy=True))
    assert [images.shape for images, _ in batches] == [(4, 3, 32, 32), (2, 3, 32, 32)]
    assert all(images.dtype == np.float32 and labels.dtype == np.int32 for images, labels in batches)


def make_big_layout(root, count=300, side=256):
    """``count`` copies of one random-pixel (incompressible) PNG named .jpg; returns total bytes."""
    (root / "images").mkdir(parents=True)
    first = root / "images" / "0000000.jpg"
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(first, format="PNG", compress_level=1)
    lines = []
    for i in range(count):
        if i:
            shutil.copy(first, root / "images" / f"{i:07d}.jpg")
        lines.append(f"{i:07d} {LABELS[i % 3]}\n")
    (root / "images_variant_train.txt").write_text("".join(lines), encoding="utf-8")
    return count * os.path.getsize(first)


def peak_allocation(read):
    """Peak of traced Python/numpy allocations while ``read()`` runs."""
    tracemalloc.start()
    try:
        read()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_is_bounded_by_one_item_not_the_dataset(tmp_path):
    total = make_big_layout(tmp_path)

    def read_lazily():
        source = annotation_files(tmp_path, "train")
        last = None
        for i in range(len(source)):
            last = source[i]
        assert last[0].size == total // 300

    def read_eagerly():
        source = annotation_files(tmp_path, "train")
        items = [np.fromfile(path, dtype=np.uint8) for path in source.paths]
        assert len(items) == 300

    assert peak_allocation(read_lazily) < total / 4
    assert peak_allocation(read_eagerly) >= total


def test_missing_image_names_the_path(tmp_path):
    make_layout(tmp_path)
    missing = tmp_path / "images" / "0000004.jpg"
    missing.unlink()
    with pytest.raises(DataError, match="images_variant_train.txt") as err:
        annotation_files(tmp_path, "train")
    assert str(missing) in str(err.value)


def test_malformed_line_names_file_and_line(tmp_path):
    make_layout(tmp_path)
    annotation = tmp_path / "images_variant_train.txt"
    annotation.write_text(annotation.read_text() + "0000099\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"images_variant_train\.txt:7"):
        annotation_files(tmp_path, "train")


def test_label_not_in_class_names(tmp_path):
    make_layout(tmp_path)
    with pytest.raises(DataError, match="707-320"):
        annotation_files(tmp_path, "train", class_names=["F-16A/B", "Cessna 172"])


def test_unreadable_images_are_skipped_with_a_warning(tmp_path, capsys):
    make_layout(tmp_path)
    (tmp_path / "images" / "0000002.jpg").write_text("not an image")
    source = annotation_files(tmp_path, "train")
    assert len(source) == 5 and str(tmp_path / "images" / "0000002.jpg") not in source.paths
    assert [source.class_names[label] for label in source.labels] == [LABELS[i % 3] for i in (0, 1, 3, 4, 5)]
    assert source.skipped == [(str(tmp_path / "images" / "0000002.jpg"), "not an image")]
    assert capsys.readouterr().err.splitlines() == [
        f"warning: skipping {tmp_path / 'images' / '0000002.jpg'}: not an image",
        "warning: skipped 1 unreadable images of split 'train'; using 5 of 6"]


@pytest.mark.parametrize("options, needle", [({"skip_bad": False}, "skip_bad_images: True"),
                                             ({"max_bad": 1}, "more than max_bad_images: 1"),
                                             ({}, "none left")])
def test_unreadable_images_that_may_not_be_skipped_are_an_error(tmp_path, options, needle):
    make_layout(tmp_path, count=2)
    for name in ("0000000.jpg", "0000001.jpg"):
        (tmp_path / "images" / name).write_bytes(b"")
    with pytest.raises(DataError, match=needle) as err:
        annotation_files(tmp_path, "train", **options)
    assert str(tmp_path / "images" / "0000000.jpg") in str(err.value) and "2 of 2 images" in str(err.value)


def test_formats_mindspore_cannot_decode_are_served_as_jpeg(tmp_path):
    make_layout(tmp_path, count=2)
    Image.open(tmp_path / "images" / "0000001.jpg").convert("RGB").save(tmp_path / "images" / "0000001.jpg", "GIF")
    source = annotation_files(tmp_path, "train")
    assert source[0][0].tobytes() == (tmp_path / "images" / "0000000.jpg").read_bytes()
    served = Image.open(io.BytesIO(source[1][0].tobytes()))
    assert served.format == "JPEG" and served.mode == "RGB" and served.size == (30, 24)
