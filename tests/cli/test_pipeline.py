"""End to end: finetune.py and validate.py on tiny data in both layouts, and their errors."""
import csv
import json
import os
import shutil

from conftest import (
    ROOT,
    TINY_CLASSES,
    TINY_TRAIN_ARGS,
    assert_one_line_error,
    assert_png,
    make_tiny_aircraft,
    run_main,
    run_script,
)
from tools.core.config import parse_config
from tools.core.errors import DataError
from tools.datasets.loader import build_loader, detect_layout, open_split
from tools.evaluate.inference import predict_logits
from tools.models.factory import class_names_of, create_network, load_weights, read_checkpoint
from tools.report import evaluation as reports

import mindspore as ms
import numpy as np
import pytest
import yaml

CKPT_NAME = "mobilenet_v3_small_100_best.ckpt"


@pytest.fixture(scope="module")
def trained(tiny_run):
    """The session's tiny GRAPH-mode run on the annotation layout, then validate.py on its best checkpoint."""
    out = tiny_run["out"]
    metrics_file = os.path.join(out, "best_reports", "metrics.json")
    val = run_script("validate.py", "--config", os.path.join(out, "config.yaml"), "--ckpt_path",
                     os.path.join(out, CKPT_NAME), "--out", metrics_file, "--report_dir", os.path.dirname(metrics_file))
    assert val.returncode == 0, val.stderr
    with open(metrics_file) as f:
        return {"out": out, "stdout": tiny_run["stdout"], "metrics": json.load(f), "validate_stdout": val.stdout}


def read_results_csv(out):
    with open(os.path.join(out, "results.csv"), newline="") as f:
        return list(csv.DictReader(f))


def recompute(cfg_file, ckpt, split="test"):
    """Logits and labels of the checkpoint's model over ``split``, computed here in the test."""
    cfg = parse_config(["--config", cfg_file, "--mode", "1"], "test")
    ms.set_context(mode=1)
    params = read_checkpoint(ckpt)
    data = open_split(cfg, split, class_names=class_names_of(params))
    net = create_network(cfg, len(data.class_names), init_from_ckpt=False)
    load_weights(net, ckpt, cfg.model, params=params, drop_head=False)
    return predict_logits(net, build_loader(cfg, data, len(data.class_names), training=False), cfg.batch_size)


def test_outputs_are_written(trained):
    out = trained["out"]
    for name in (CKPT_NAME, "mobilenet_v3_small_100_last.ckpt", "results.txt", "results.csv", "config.yaml"):
        assert os.path.isfile(os.path.join(out, name)), name
    width, height = reports.CURVES_SIZE
    assert_png(os.path.join(out, "training_curves.png"), int(width * reports.DPI), int(height * reports.DPI))
    rows = read_results_csv(out)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert set(rows[0]) == {"epoch", "train_loss", "val_loss", "top1", "top5", "mean_per_class_acc", "lr", "seconds"}
    text = open(os.path.join(out, "results.txt")).read().splitlines()
    assert text[0].split() == ["epoch", "train_loss", "val_loss", "top1", "top5", "mean_per_class_acc", "lr", "seconds"]
    assert len(text) == 3
    saved = yaml.safe_load(open(os.path.join(out, "config.yaml")))
    assert saved["image_resize"] == 32 and saved["train_split"] == "trainval"


def test_class_names_travel_with_checkpoint(trained):
    params = ms.load_checkpoint(os.path.join(trained["out"], CKPT_NAME))
    assert class_names_of(params) == TINY_CLASSES


def test_reported_top1_equals_numpy_recomputation(trained):
    out = trained["out"]
    logits, labels = recompute(os.path.join(out, "config.yaml"), os.path.join(out, CKPT_NAME))
    assert len(labels) == 4 * len(TINY_CLASSES)          # every test image exactly once
    top1 = float((logits.argmax(axis=1) == labels).mean())
    best = max(float(r["top1"]) for r in read_results_csv(out))
    assert top1 == pytest.approx(best, abs=1e-9)
    metrics = trained["metrics"]
    assert metrics["top1"] == pytest.approx(top1, abs=1e-9)
    assert metrics["num_samples"] == len(labels)
    top5 = np.mean([label in np.argsort(-row)[:5] for row, label in zip(logits, labels)])
    assert metrics["top5"] == pytest.approx(top5, abs=1e-9)
    assert f"top1 {top1:.4f}" in trained["validate_stdout"]


def test_split_tree_and_raw_layout_share_a_config(tmp_path):
    data = make_tiny_aircraft(str(tmp_path / "data"), per_class={"trainval": 4, "test": 2})
    raw = parse_config(["--data_dir", data, "--train_split", "trainval"], "t")
    assert detect_layout(raw, "trainval") == "annotation"
    proc = run_script("tools/split_aircraft.py", "--data_dir", data)
    assert proc.returncode == 0, proc.stderr
    assert detect_layout(raw, "trainval") == "folder"
    ms.set_context(mode=1)
    tree = open_split(raw, "trainval")
    annotated = open_split(parse_config(["--data_dir", data, "--dataset_format", "annotation"], "t"), "trainval")
    assert tree.class_names == annotated.class_names == TINY_CLASSES
    assert tree.size == annotated.size == 4 * len(TINY_CLASSES)

    def labels_by_image(split_data):
        found = {}
        for image, label in split_data.dataset.create_tuple_iterator(num_epochs=1, output_numpy=True):
            found[bytes(image)] = int(label)
        return found

    assert labels_by_image(tree) == labels_by_image(annotated)   # same image -> same class index


def test_detection_errors(tmp_path):
    cfg = parse_config(["--data_dir", str(tmp_path)], "t")
    with pytest.raises(DataError, match="split 'train' not found"):
        detect_layout(cfg, "train")
    cfg = parse_config(["--data_dir", str(tmp_path), "--dataset_format", "folder"], "t")
    with pytest.raises(DataError, match="split folder not found"):
        detect_layout(cfg, "train")


def test_folder_split_without_classes_file_uses_sorted_folders(tmp_path):
    for split in ("train", "val"):
        for name in ("b_class", "a_class"):
            os.makedirs(tmp_path / split / name)
            shutil.copy(os.path.join(ROOT, "data", "fashion_mnist", "images",
                                     "0000095.jpg"), tmp_path / split / name / "x.jpg")
    cfg = parse_config(["--data_dir", str(tmp_path)], "t")
    assert open_split(cfg, "train").class_names == ["a_class", "b_class"]


def test_num_classes_mismatch_is_one_line(tiny_aircraft, tmp_path):
    proc = run_main("finetune.py", "--data_dir", tiny_aircraft, *TINY_TRAIN_ARGS, "--num_classes", "100",
                    "--ckpt_save_dir", tmp_path)
    assert_one_line_error(proc, "num_classes is 100", "5 classes", code=2)


def test_missing_image_is_one_line(tmp_path):
    data = make_tiny_aircraft(str(tmp_path / "data"), per_class={"trainval": 2, "test": 1})
    victim = open(os.path.join(data, "images_variant_trainval.txt")).readline().split()[0]
    os.remove(os.path.join(data, "images", victim + ".jpg"))
    proc = run_main("finetune.py", "--data_dir", data, *TINY_TRAIN_ARGS, "--ckpt_save_dir", tmp_path / "o")
    assert_one_line_error(proc, victim + ".jpg", code=1)


def test_malformed_annotation_is_one_line(tmp_path):
    data = make_tiny_aircraft(str(tmp_path / "data"), per_class={"trainval": 2, "test": 1})
    with open(os.path.join(data, "images_variant_trainval.txt"), "a") as f:
        f.write("0000001\n")
    proc = run_main("finetune.py", "--data_dir", data, *TINY_TRAIN_ARGS, "--ckpt_save_dir", tmp_path / "o")
    assert_one_line_error(proc, "images_variant_trainval.txt:11", "malformed", code=1)


def test_unknown_split_is_one_line(tiny_aircraft, tmp_path):
    proc = run_main("finetune.py", "--data_dir", tiny_aircraft, *TINY_TRAIN_ARGS, "--val_split", "nope",
                    "--ckpt_save_dir", tmp_path)
    assert_one_line_error(proc, "split 'nope' not found", "test", "trainval", code=1)


def test_validate_without_checkpoint_is_usage_error():
    assert_one_line_error(run_script("validate.py"), "--ckpt_path", code=2)


MINDCV_STYLE_CONFIG = {
    "mode": 0, "distribute": True, "num_parallel_workers": 8, "val_while_train": True, "dataset": "imagenet",
    "data_dir": "/path/to/imagenet", "shuffle": True, "dataset_download": False, "batch_size": 75,
    "drop_remainder": True, "train_split": "train", "image_resize": 224, "scale": [0.08, 1.0],
    "ratio": [0.75, 1.333], "hflip": 0.5, "color_jitter": 0.4, "interpolation": "bilinear", "crop_pct": 0.875,
    "model": "mobilenet_v3_small_100", "num_classes": 1000, "pretrained": False, "ckpt_path": "",
    "keep_checkpoint_max": 30, "ckpt_save_dir": "./ckpt", "epoch_size": 470, "dataset_sink_mode": True,
    "amp_level": "O3", "loss": "CE", "label_smoothing": 0.1, "scheduler": "cosine_decay", "min_lr": 0.0,
    "lr": 0.77, "warmup_epochs": 4, "decay_epochs": 466, "opt": "momentum", "weight_decay_filter": "auto",
    "momentum": 0.9, "weight_decay": 0.00002, "loss_scale": 1024, "use_nesterov": False}


def test_mindcv_config_runs_unchanged_with_cli_overrides(tiny_aircraft, tmp_path):
    """The design document's command shape: MindCV's config file + --data_dir/--num_classes overrides."""
    cfg_file = tmp_path / "mobilenet_v3_small_ascend.yaml"
    cfg_file.write_text(yaml.safe_dump(MINDCV_STYLE_CONFIG))
    proc = run_script("finetune.py", f"--config={cfg_file}", f"--data_dir={tiny_aircraft}", "--num_classes=5",
                      "--train_split=trainval", "--val_split=test", "--epoch_size=1", "--batch_size=8",
                      "--image_resize=32", "--lr=0.002", f"--ckpt_save_dir={tmp_path / 'out'}")
    assert proc.returncode == 0, proc.stderr
    assert len(read_results_csv(str(tmp_path / "out"))) == 1


def test_pretrained_offline_is_one_line(tiny_aircraft, tmp_path):
    proc = run_main("finetune.py", "--data_dir", tiny_aircraft, *TINY_TRAIN_ARGS, "--pretrained=True",
                    "--ckpt_save_dir", tmp_path)
    assert_one_line_error(proc, "pretrained", "ckpt_path", code=1)
    cache = os.path.expanduser("~/.mindspore/models")
    assert not any(os.path.getsize(os.path.join(cache, f)) == 0 for f in os.listdir(cache))  # no empty leftovers
