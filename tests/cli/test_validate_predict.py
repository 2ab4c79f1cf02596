"""validate.py and predict.py on one tiny trained model: metrics recomputed from the saved predictions,
reports and figures, bad input files, both dataset layouts; plus unit tests of the report functions."""
import glob
import json
import os

from conftest import (
    CKPT_NAME,
    FAST,
    SPLIT_TAG,
    TINY_CLASSES,
    assert_one_line_error,
    assert_png,
    make_tiny_aircraft,
    read_csv,
    read_predictions,
    run_parallel,
    run_script,
)
from tools.evaluate import metrics
from tools.report import evaluation as reports

import numpy as np
import pytest

REPORT_DIR = "report_mobilenet_v3_small_100_last_test"  # validate.py's default report folder


def only(folder, pattern):
    """The one file in ``folder`` matching ``pattern``."""
    found = glob.glob(os.path.join(folder, pattern))
    assert len(found) == 1, (pattern, os.listdir(folder))
    return found[0]


# ---- unit tests of tools/report/evaluation.py ----------------------------------------------------------------

def test_mean_per_class_accuracy_differs_from_top1_on_imbalanced_data():
    labels = np.array([0] * 90 + [1] * 10)
    preds = np.zeros(100, dtype=int)                  # class 0 always right, class 1 always wrong
    assert metrics.mean_per_class_accuracy(labels, preds, 2) == pytest.approx(0.5)
    result, matrix = reports.class_report(np.eye(2)[preds], labels, ["common", "rare"])
    assert result["top1"] == pytest.approx(0.9)
    assert result["mean_per_class_acc"] == pytest.approx(0.5)
    assert result["per_class"] == {"common": 1.0, "rare": 0.0}
    assert matrix.tolist() == [[90, 0], [10, 0]]


def test_class_without_samples_is_left_out_of_the_mean():
    labels, preds = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])
    result, matrix = reports.class_report(np.eye(3)[preds], labels, ["a", "b", "c"])
    assert result["per_class"] == {"a": 0.5, "b": 1.0, "c": None}
    assert result["mean_per_class_acc"] == pytest.approx(0.75)
    assert matrix.sum(axis=1).tolist() == [2, 2, 0]


@pytest.mark.parametrize("num_classes", [10, 100])
def test_confusion_matrix_png_scales_with_the_class_count(tmp_path, num_classes):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, num_classes, 2000)
    preds = np.where(rng.random(2000) < 0.7, labels, rng.integers(0, num_classes, 2000))
    names = [f"Boeing 7{i:02d}-{i}00/ER" for i in range(num_classes)]
    path = str(tmp_path / "cm.png")
    reports.plot_confusion_matrix(metrics.confusion_matrix(labels, preds, num_classes), names, path)
    side = int(reports.matrix_inches(num_classes) * reports.DPI)
    assert side == (900 if num_classes == 10 else 1800)
    assert_png(path, side, side)


def test_training_curves_png(tmp_path):
    rows = [{"epoch": 1, "train_loss": 2.3},  # not validated (as the training loop writes it)
            {"epoch": 2, "train_loss": 1.9, "val_loss": 2.0, "top1": 0.3},
            {"epoch": 3, "train_loss": 1.5, "val_loss": None, "top1": None},
            {"epoch": 4, "train_loss": 1.2, "val_loss": 1.4, "top1": 0.55}]
    path = str(tmp_path / "curves.png")
    reports.plot_training_curves(rows, path)
    width, height = reports.CURVES_SIZE
    assert_png(path, int(width * reports.DPI), int(height * reports.DPI))


def test_pred_txt_is_numpy_savetxt_format(tmp_path):
    path = str(tmp_path / "pred.txt")
    reports.write_pred_txt(path, np.array([3, 1]), np.array([3, 0]))
    assert open(path).read() == "# pred \t real\n3 3\n1 0\n"
    assert np.loadtxt(path, dtype=int).tolist() == [[3, 3], [1, 0]]


# ---- validate.py ---------------------------------------------------------------------------------

def test_runs_succeed_without_noise(trained_run):
    for name in ("validate", "split", "mindir"):
        assert trained_run[name].returncode == 0, trained_run[name].stderr
        assert trained_run[name].stderr == "", (name, trained_run[name].stderr)  # no warnings, no 'Exception ignored'


def test_validate_metrics_match_numpy_recomputation_from_predictions(trained_run):
    result = json.load(open(os.path.join(trained_run["out"], "metrics.json")))
    header, rows = read_predictions(os.path.join(trained_run["dirs"]["split"], f"predictions_{SPLIT_TAG}.csv"))
    true = np.array([TINY_CLASSES.index(r["true"]) for r in rows])
    pred = np.array([TINY_CLASSES.index(r["pred"]) for r in rows])
    top5 = [[r[f"top{i}"] for i in range(1, 6)] for r in rows]
    assert result["num_samples"] == len(rows) == 4 * len(TINY_CLASSES)   # every test image once
    assert result["top1"] == pytest.approx(np.mean(pred == true), abs=1e-9)
    assert result["top5"] == pytest.approx(np.mean([r["true"] in t for r, t in zip(rows, top5)]), abs=1e-9)
    prob_true = [float(r[f"top{t.index(r['true']) + 1}_prob"]) for r, t in zip(rows, top5)]
    assert result["loss"] == pytest.approx(-np.mean(np.log(prob_true)), rel=1e-4)
    per_class = {name: float(np.mean(pred[true == i] == i)) for i, name in enumerate(TINY_CLASSES)}
    assert result["per_class"] == pytest.approx(per_class)
    assert result["mean_per_class_acc"] == pytest.approx(np.mean(list(per_class.values())))
    pred_txt = np.loadtxt(os.path.join(trained_run["dirs"]["split"], f"pred_{SPLIT_TAG}.txt"), dtype=int)
    assert pred_txt[:, 0].tolist() == pred.tolist() and pred_txt[:, 1].tolist() == true.tolist()


def test_validate_writes_confusion_matrix_and_per_class_reports(trained_run):
    folder = os.path.join(trained_run["out"], REPORT_DIR)  # default report_dir: beside the checkpoint
    assert "mean per-class acc" in trained_run["validate"].stdout
    table = read_csv(os.path.join(folder, "confusion_matrix.csv"))
    assert table[0] == ["true\\pred"] + TINY_CLASSES                        # 'T-shirt/top' kept as is
    assert [row[0] for row in table[1:]] == TINY_CLASSES
    counts = np.array([[int(v) for v in row[1:]] for row in table[1:]])
    per_class = read_csv(os.path.join(folder, "per_class.csv"))
    assert per_class[0] == ["class", "support", "correct", "accuracy", "precision", "recall", "f1"]
    assert counts.sum(axis=1).tolist() == [int(r[1]) for r in per_class[1:]] == [4] * len(TINY_CLASSES)
    assert np.diag(counts).tolist() == [int(r[2]) for r in per_class[1:]]
    result = json.load(open(os.path.join(trained_run["out"], "metrics.json")))
    assert [float(r[3]) for r in per_class[1:]] == pytest.approx([result["per_class"][c] for c in TINY_CLASSES])
    side = int(reports.matrix_inches(len(TINY_CLASSES)) * reports.DPI)
    assert_png(os.path.join(folder, "confusion_matrix.png"), side, side)


# ---- predict.py on a split -----------------------------------------------------------------------

def test_predict_split_outputs(trained_run, tiny_aircraft):
    folder = trained_run["dirs"]["split"]
    header, rows = read_predictions(os.path.join(folder, f"predictions_{SPLIT_TAG}.csv"))
    assert header == ["file", "true", "true_prob", "pred"] + [c for i in range(1, 6)
                                                              for c in (f"top{i}", f"top{i}_prob")]
    lines = open(os.path.join(tiny_aircraft, "images_variant_test.txt")).read().splitlines()
    expected = [(os.path.join(tiny_aircraft, "images", line.split(" ", 1)[0] + ".jpg"), line.split(" ", 1)[1])
                for line in lines]
    assert [(r["file"], r["true"]) for r in rows] == expected        # paths and labels in dataset order
    for r in rows:
        probs = [float(r[f"top{i}_prob"]) for i in range(1, 6)]
        assert r["pred"] == r["top1"] and probs == sorted(probs, reverse=True)
        assert sum(probs) == pytest.approx(1.0, abs=1e-4)           # 5 classes: top-5 is everything
        assert sorted(r[f"top{i}"] for i in range(1, 6)) == sorted(TINY_CLASSES)
    text = open(os.path.join(folder, f"pred_{SPLIT_TAG}.txt")).read().splitlines()
    assert text[0] == "# pred \t real" and len(text) == 1 + len(rows)
    assert all(len(line.split()) == 2 for line in text[1:])
    grid_rows, grid_cols = reports.grid_shape(16)
    size = int(reports.GRID_CELL_INCHES * reports.DPI)
    assert_png(os.path.join(folder, f"grid_first_{SPLIT_TAG}.png"), grid_cols * size, grid_rows * size)


# ---- predict.py on files -------------------------------------------------------------------------

def test_predict_files_skips_bad_ones_with_a_warning_each(trained_run):
    proc = trained_run["files"]
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(warnings) == len(trained_run["bad"]) + 1, proc.stderr               # one per file, then the count
    for path in trained_run["bad"]:
        assert sum(line.startswith(f"warning: skipping {path}: ") for line in warnings) == 1, (path, warnings)
    assert warnings[-1].startswith(f"warning: skipped {len(trained_run['bad'])} unreadable images")
    written = sorted(os.listdir(trained_run["dirs"]["files"]))
    assert len(written) == 2 and not any(name.startswith("pred_") for name in written), written  # no pred.txt
    records = json.load(open(only(trained_run["dirs"]["files"],
                                  "predictions_mobilenet_v3_small_100_last_files-*.json")))
    assert sorted(r["file"] for r in records) == sorted(trained_run["good"])
    for r in records:
        assert r["true"] is None and r["pred"] == r["topk"][0]["class"] and len(r["topk"]) == 3
        assert {t["class"] for t in r["topk"]} <= set(TINY_CLASSES)
        assert all(0 <= t["prob"] <= 1 for t in r["topk"])
    rows, cols = reports.grid_shape(3)
    size = int(reports.GRID_CELL_INCHES * reports.DPI)
    assert_png(only(trained_run["dirs"]["files"], "grid_first_mobilenet_v3_small_100_last_files-*.png"),
               cols * size, rows * size)


def test_cli_errors_are_one_line(trained_run, tmp_path):
    cfg = os.path.join(trained_run["out"], "config.yaml")
    ckpt = os.path.join(trained_run["out"], CKPT_NAME)
    bad_only = tmp_path / "bad"
    bad_only.mkdir()
    (bad_only / "x.jpg").write_text("text")
    no_model, missing, nothing, wrong_size = run_parallel(
        ("predict.py", "--config", cfg, "--format", "json"),
        ("predict.py", "--config", cfg, "--ckpt_path", ckpt, *FAST, "--input", str(tmp_path / "nope.jpg")),
        ("predict.py", "--config", cfg, "--ckpt_path", ckpt, *FAST, "--input", str(bad_only)),
        ("predict.py", "--mindir", os.path.join(trained_run["bundle"], "model.mindir"), "--image_resize", "64"))
    assert_one_line_error(no_model, "--ckpt_path", "--mindir", code=2)
    assert_one_line_error(missing, "input not found", "nope.jpg", code=1)
    assert_one_line_error(wrong_size, "takes 32x32 images but image_resize is 64", "--config", code=2)
    assert_one_line_error(nothing, str(bad_only / "x.jpg"), "none left", code=1)


# ---- the folder layout: predictions follow SplitData.paths ------------------------------------------

def test_folder_layout_paths_follow_dataset_order(tmp_path):
    from tools.core.config import parse_config
    from tools.datasets.loader import open_split

    data = make_tiny_aircraft(str(tmp_path / "data"), per_class={"test": 2})
    proc = run_script("tools/split_aircraft.py", "--data_dir", data, "--splits", "test")
    assert proc.returncode == 0, proc.stderr
    split = open_split(parse_config(["--data_dir", data, "--dataset_format", "folder"], "t"), "test", TINY_CLASSES)
    read = [(bytes(image), int(label)) for image, label in split.dataset.create_tuple_iterator(output_numpy=True)]
    assert len(read) == len(split.paths) == 2 * len(TINY_CLASSES)
    for path, (image, label) in zip(split.paths, read):
        assert image == open(path, "rb").read()
        assert os.path.basename(os.path.dirname(path)) == TINY_CLASSES[label].replace("/", "_")
