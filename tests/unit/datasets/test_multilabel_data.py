"""Multi-label data (task: multilabel): list files with label sets, class order, refusals, the balance line and
label vectors through the loader (tools/datasets/readers/list_file.py, loader.py, tools/train/tasks.py)."""
import argparse
import csv
import os
import shutil

from conftest import demo_image
from tools.core.config import option_table, parse_config
from tools.core.errors import DataError, UsageError
from tools.datasets.loader import build_loader, open_source, open_split

import numpy as np
import pytest

ROWS = [("0.jpg", "dog;cat"), ("1.jpg", "cat"), ("2.jpg", ""), ("3.jpg", "sofa ; dog"), ("4.jpg", "cat;sofa;dog"),
        ("5.jpg", "dog")]


def config(data_dir, **values):
    cfg = {key: spec[0] for key, spec in option_table().items()}
    cfg.update({"data_dir": str(data_dir), "check_cache_dir": "off", "task": "multilabel", "loss": "bce",
                "best_metric": "map", "num_parallel_workers": 1, "image_resize": 32, **values})
    return argparse.Namespace(**cfg)


def write_list(root, rows, name="train.csv", delimiter=";"):
    """``rows`` of (image, labels) as ``name`` in ``root``, the images copied from the demo data."""
    os.makedirs(root, exist_ok=True)
    for i, (image, _) in enumerate(rows):
        shutil.copy(demo_image(i), os.path.join(root, image))
    if name.endswith(".csv"):
        with open(os.path.join(root, name), "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([("image", "label"), *[(i, lab.replace(";", delimiter)) for i, lab in rows]])
    else:
        with open(os.path.join(root, name), "w", encoding="utf-8") as f:
            f.writelines(f"{i} {lab}".rstrip() + "\n" for i, lab in rows)


@pytest.mark.parametrize("name", ["train.csv", "train.txt"])
def test_label_sets_become_multi_hot_vectors_in_sorted_class_order(tmp_path, name):
    write_list(tmp_path, ROWS, name)
    kind, source = open_source(config(tmp_path), "train")
    assert kind == "list" and source.class_names == ["cat", "dog", "sofa"]
    expected = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0], [0, 1, 1], [1, 1, 1], [0, 1, 0]], np.float32)
    assert source.labels.dtype == np.float32 and np.array_equal(source.labels, expected)


def test_classes_txt_fixes_the_order_and_a_custom_delimiter_splits(tmp_path):
    write_list(tmp_path, ROWS, delimiter="|")
    with open(tmp_path / "classes.txt", "w") as f:
        f.write("sofa\ndog\ncat\nbird\n")
    _, source = open_source(config(tmp_path, label_delimiter="|"), "train")
    assert source.class_names == ["sofa", "dog", "cat", "bird"]
    assert source.labels[0].tolist() == [0, 1, 1, 0] and source.labels[3].tolist() == [1, 1, 0, 0]


@pytest.mark.parametrize("label, message", [
    ("cat;;dog", "train.csv:2: empty label between delimiters ';' in 'cat;;dog'"),
    ("cat;", "train.csv:2: empty label between delimiters ';' in 'cat;'"),
    ("cat;cat", "train.csv:2: label 'cat' is given twice in 'cat;cat'"),
    ("horse", "train.csv:2: label 'horse' is not a class of"),
])
def test_bad_label_fields_are_one_line_errors_naming_file_and_line(tmp_path, label, message):
    write_list(tmp_path, [("0.jpg", label), ("1.jpg", "dog")])
    with open(tmp_path / "classes.txt", "w") as f:
        f.write("cat\ndog\n")
    with pytest.raises(DataError) as err:
        open_source(config(tmp_path), "train")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_validation_label_unknown_to_the_training_split_is_an_error(tmp_path):
    write_list(tmp_path, [("0.jpg", "cat"), ("1.jpg", "owl")], name="val.csv")
    with pytest.raises(DataError, match=r"val.csv:3: label 'owl' is not a class of the training split"):
        open_source(config(tmp_path), "val", class_names=["cat", "dog"])


def test_folder_and_annotation_layouts_refuse_multilabel(tmp_path):
    os.makedirs(tmp_path / "train" / "cat")
    shutil.copy(demo_image(0), tmp_path / "train" / "cat" / "0.jpg")
    with pytest.raises(UsageError) as err:
        open_source(config(tmp_path), "train")
    assert str(err.value) == (f"'task: multilabel' needs the list layout (<split>.csv or .txt, labels separated by "
                              f"label_delimiter): split 'train' of {tmp_path} is in the folder layout")


def test_single_label_lists_are_read_as_before(tmp_path):
    write_list(tmp_path, [("0.jpg", "dog"), ("1.jpg", "cat;dog")])
    _, source = open_source(config(tmp_path, task="single", loss="ce", best_metric="top1"), "train")
    assert source.class_names == ["cat;dog", "dog"] and source.labels.dtype == np.int32
    assert source.labels.tolist() == [1, 0]


def test_the_balance_line_counts_images_per_label_and_labels_per_image(tmp_path, capsys):
    write_list(tmp_path, ROWS)
    open_split(config(tmp_path), "train")
    assert ("split 'train': 6 images, 3 labels; images per label min 2 / median 3 / max 4, imbalance ratio 2.0; "
            "labels per image min 0 / mean 1.50 / max 3, 1 without a label") in capsys.readouterr().out


def batches_of(cfg, training):
    data = open_split(cfg, "train", training=training)
    loader = build_loader(cfg, data, len(data.class_names), training=training)
    return [(images, labels) for images, labels in loader.create_tuple_iterator(num_epochs=1, output_numpy=True)]


def test_label_vectors_go_through_the_loader_as_float32(tmp_path):
    write_list(tmp_path, ROWS)
    cfg = config(tmp_path, batch_size=3)
    labels = np.concatenate([labels for _, labels in batches_of(cfg, training=False)])
    assert labels.dtype == np.float32 and labels.tolist() == open_source(cfg, "train")[1].labels.tolist()


def test_mixup_mixes_the_label_vectors_with_the_images(tmp_path):
    write_list(tmp_path, ROWS)
    cfg = config(tmp_path, batch_size=6, mixup=0.4, shuffle=False, hflip=0.0)
    truth = open_source(cfg, "train")[1].labels
    (images, labels), = batches_of(cfg, training=True)
    assert labels.dtype == np.float32 and labels.shape == (6, 3)
    # lam y + (1 - lam) y_flipped for one lam of the batch, read back from the first row that differs
    lam = next(1 - abs(a - b) for a, b in zip(labels.ravel(), truth.ravel()) if abs(a - b) > 1e-6)
    assert np.allclose(labels, lam * truth + (1 - lam) * truth[::-1], atol=1e-6) or \
        np.allclose(labels, (1 - lam) * truth + lam * truth[::-1], atol=1e-6)


@pytest.mark.parametrize("flags, message", [
    (["--loss", "ce", "--best_metric", "map"], "'task: multilabel' needs 'loss: bce' (sigmoid + binary "
                                               "cross-entropy), got 'ce'"),
    (["--loss", "bce"], "'best_metric: top1' is not a metric of 'task: multilabel': use map, f1, val_loss"),
    (["--loss", "bce", "--best_metric", "f1", "--sampler", "balanced"], "'sampler: balanced' draws by class"),
    (["--loss", "bce", "--best_metric", "map", "--label_delimiter", ""], "'label_delimiter' must not be empty"),
    (["--loss", "bce", "--best_metric", "map", "--val_fraction", "0.2"], "'val_fraction' splits a folder of class "
                                                                         "folders, which cannot hold label sets"),
])
def test_config_refuses_what_multilabel_cannot_do(flags, message):
    with pytest.raises(UsageError) as err:
        parse_config(["--task", "multilabel", *flags], "test")
    assert str(err.value).startswith(message)


def test_config_refuses_multilabel_metrics_for_single_label():
    with pytest.raises(UsageError, match=r"'best_metric: map' is not a metric of 'task: single': use top1, "):
        parse_config(["--best_metric", "map"], "test")
    assert parse_config(["--task", "multilabel", "--loss", "bce", "--best_metric", "map", "--class_weights",
                         "balanced"], "test").class_weights == "balanced"
