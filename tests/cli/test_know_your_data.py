"""Know your data and your model, on data whose truth is known: tools/cross_validate.py's folds, summary and
out-of-fold predictions recomputed from its fold runs, planted label flips found by confident learning (and by
tools/find_label_errors.py), an interrupted CV continued, and the refusals that come before any write;
validate.py --ood_dir's AUROC and FPR at 95% TPR recomputed from its saved scores, and its fitted threshold used
by predict.py --min_prob auto (checkpoint and exported ONNX). Grad-CAM: tests/cli/test_explain.py."""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys

from conftest import (
    ROOT,
    assert_one_line_error,
    assert_png,
    demo_image,
    folder_hash,
    make_colour_folder,
    run_main,
    run_script,
)
from tools.analysis import cross_validation as cv
from tools.analysis import label_errors, ood
from tools.datasets.readers import list_file

import numpy as np
import pytest
from PIL import Image

FOLDS, PER_CLASS = 3, 20
# a linear probe on a frozen random ResNet-18 at 32 px: seconds per fold, and its features separate colours
CV_ARGS = ["--train_split", "train", "--model", "resnet18", "--image_resize", "32", "--batch_size", "16",
           "--epoch_size", "3", "--warmup_epochs", "0", "--lr", "0.01", "--opt", "adamw", "--num_parallel_workers", "1",
           "--log_interval", "100", "--dataset", "", "--mode", "1", "--freeze_backbone", "True", "--freeze_bn_stats",
           "True", "--cache_features", "True", "--crop_pct", "1.0", "--hflip", "0", "--scale", "1", "1", "--ratio", "1",
           "1", "--color_jitter", "none"]


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    """4 colours x 20 images in ``data/train/``, one image of each colour planted in the next colour's folder (5%)."""
    data = str(tmp_path_factory.mktemp("colours") / "data")
    planted = make_colour_folder(os.path.join(data, "train"), PER_CLASS, flips_per_class=1)
    return data, planted


@pytest.fixture(scope="module")
def cv_run(colours, tmp_path_factory):
    data, planted = colours
    before = folder_hash(data)
    out = str(tmp_path_factory.mktemp("cv") / "cv")
    proc = run_script("tools/cross_validate.py", "--folds", FOLDS, "--out", out, "--data_dir", data, *CV_ARGS)
    assert proc.returncode == 0, proc.stderr
    return dict(data=data, planted=planted, out=out, proc=proc, data_unchanged=folder_hash(data) == before)


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def oof_table(out):
    """``(images, labels, folds, probs, class names)`` of oof_predictions.csv, parsed here with csv and numpy."""
    rows = read_rows(os.path.join(out, cv.OOF_FILE))
    names = [key[len("prob:"):] for key in rows[0] if key.startswith("prob:")]
    probs = np.array([[float(row[f"prob:{n}"]) for n in names] for row in rows])
    labels = np.array([names.index(row["label"]) for row in rows])
    return [row["image"] for row in rows], labels, np.array([int(row["fold"]) for row in rows]), probs, names


def test_planted_label_flips_are_found_and_the_data_is_untouched(cv_run):
    assert cv_run["data_unchanged"]
    issues = read_rows(os.path.join(cv_run["out"], label_errors.ISSUES_FILE))
    top = [row["image"] for row in issues[:len(cv_run["planted"])]]
    found = set(top) & set(cv_run["planted"])
    assert len(found) >= len(cv_run["planted"]) / 2, (top, cv_run["planted"])
    for row in issues:  # a planted image's suggestion is its real colour (the start of its file name)
        if row["image"] in found:
            assert os.path.basename(row["image"]).startswith(row["suggested_label"] + "_"), row
    assert [int(row["rank"]) for row in issues] == list(range(1, len(issues) + 1))
    scores = [float(row["score"]) for row in issues]
    assert scores == sorted(scores, reverse=True)
    assert_png(os.path.join(cv_run["out"], label_errors.GRID_FILE), *_png_size(cv_run, len(issues)))
    stdout = cv_run["proc"].stdout
    assert f"label issues: {len(issues)} suspects of {4 * PER_CLASS} images" in stdout
    for name in ("red", "green", "blue", "yellow"):
        count = sum(row["given_label"] == name for row in issues)
        assert f"  {name}: {count} suspects of {PER_CLASS} images" in stdout


def _png_size(cv_run, count):
    from tools.report.evaluation import DPI, GRID_CELL_INCHES, grid_shape

    rows, cols = grid_shape(min(count, 16))
    return int(cols * GRID_CELL_INCHES * DPI), int(rows * GRID_CELL_INCHES * DPI)


def test_confident_learning_recomputed_from_the_oof_probabilities(cv_run):
    images, labels, _, probs, names = oof_table(cv_run["out"])
    thresholds = np.array([probs[labels == j, j].mean() for j in range(len(names))])
    expected = []
    for i, (label, row) in enumerate(zip(labels, probs)):
        others = [j for j in range(len(names)) if j != label and row[j] >= thresholds[j]]
        if row[label] < thresholds[label] and others:
            best = max(others, key=lambda j: row[j])
            expected.append((-(row[best] - row[label]), i, names[best]))
    issues = read_rows(os.path.join(cv_run["out"], label_errors.ISSUES_FILE))
    assert [(images[i], s) for _, i, s in sorted(expected)] == [(r["image"], r["suggested_label"]) for r in issues]
    assert len(issues) > 0


def test_cv_summary_equals_a_recomputation_from_the_fold_runs(cv_run):
    out = cv_run["out"]
    summary = json.load(open(os.path.join(out, cv.SUMMARY_JSON), encoding="utf-8"))
    images, labels, folds, probs, names = oof_table(out)
    assert sorted(images) == sorted(os.path.join(cv_run["data"], "train", c, f) for c in names
                                    for f in os.listdir(os.path.join(cv_run["data"], "train", c)))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    per_fold = []
    for fold in range(1, FOLDS + 1):
        lists = os.path.join(out, "folds", f"fold_{fold}")
        val = [row["image"] for row in read_rows(os.path.join(lists, "val.csv"))]
        train = [row["image"] for row in read_rows(os.path.join(lists, "train.csv"))]
        assert sorted(val) == sorted(np.array(images)[folds == fold]) and not set(val) & set(train)
        assert sorted(val + train) == sorted(images)
        for j in range(len(names)):  # stratified: each class's images split as evenly as they can be
            assert abs((labels[folds == fold] == j).sum() - PER_CLASS / FOLDS) < 1
        p, y = probs[folds == fold], labels[folds == fold]
        pred = p.argmax(axis=1)
        recall = [np.mean(pred[y == j] == j) for j in range(len(names))]
        f1 = [2 * np.sum((pred == j) & (y == j)) / (np.sum(pred == j) + np.sum(y == j)) for j in range(len(names))]
        mine = {"top1": np.mean(pred == y), "macro_f1": np.mean(f1), "mean_per_class_acc": np.mean(recall),
                "loss": -np.mean(np.log(p[np.arange(len(y)), y]))}
        row = summary["per_fold"][fold - 1]
        for key, value in mine.items():
            assert row[key] == pytest.approx(value, abs=1e-9), (fold, key)
        run = json.load(open(os.path.join(out, f"fold_{fold}", "summary.json"), encoding="utf-8"))
        assert row["top1"] == pytest.approx(run["best_metrics"]["top1"], abs=1e-6)   # the fold run's own validation
        assert row["loss"] == pytest.approx(run["best_metrics"]["val_loss"], abs=1e-4)
        assert row["checkpoint"] == run["best_checkpoint"]
        per_fold.append(mine)
    for key in cv.METRICS:
        values = [m[key] for m in per_fold]
        assert summary["mean"][key] == pytest.approx(np.mean(values), abs=1e-9)
        assert summary["std"][key] == pytest.approx(np.std(values), abs=1e-9)
    markdown = open(os.path.join(out, cv.SUMMARY_MD), encoding="utf-8").read()
    assert f"| mean +- std | | {summary['mean']['top1']:.4f} +- {summary['std']['top1']:.4f} |" in markdown


def test_find_label_errors_cli_and_the_clean_list(cv_run, tmp_path):
    clean = str(tmp_path / "clean" / "train.csv")
    proc = run_main("tools/find_label_errors.py", "--oof", os.path.join(cv_run["out"], cv.OOF_FILE), "--out_dir",
                    str(tmp_path / "issues"), "--write_clean_list", clean)
    assert proc.returncode == 0, proc.stderr
    mine = read_rows(str(tmp_path / "issues" / label_errors.ISSUES_FILE))
    assert mine == read_rows(os.path.join(cv_run["out"], label_errors.ISSUES_FILE))
    images, _, _, _, names = oof_table(cv_run["out"])
    paths, labels, classes = list_file.read_split(cv_run["data"], clean, class_names=names)
    assert sorted(paths) == sorted(set(images) - {row["image"] for row in mine})
    assert all(os.path.basename(os.path.dirname(p)) == classes[k] for p, k in zip(paths, labels))
    assert f"clean list: {len(paths)} images (without the {len(mine)} suspects)" in proc.stdout


def test_an_interrupted_cross_validation_continues(cv_run, tmp_path):
    """SIGTERM during fold 2 (after its first epoch); the same command skips fold 1, resumes fold 2 through the
    suite's resume and ends with the uninterrupted CV's numbers."""
    out = str(tmp_path / "cv")
    command = [sys.executable, os.path.join(ROOT, "tools/cross_validate.py"), "--folds", str(FOLDS), "--out", out,
               "--data_dir", cv_run["data"], *CV_ARGS]
    env = dict(os.environ, GLOG_v="3", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    in_fold_2 = False
    for line in proc.stdout:
        in_fold_2 = in_fold_2 or line.startswith("fold 2/3: training")
        if in_fold_2 and line.startswith("epoch 1/3  train_loss"):
            proc.send_signal(signal.SIGTERM)
            break
    proc.communicate(timeout=300)
    assert proc.returncode == 143
    assert not os.path.isfile(os.path.join(out, "fold_2", "summary.json"))
    fold_1 = folder_hash(os.path.join(out, "fold_1"))
    again = run_script(*command[1:])
    assert again.returncode == 0, again.stderr
    assert "fold 1/3: finished earlier, not trained again" in again.stdout
    assert f"resume: auto continues the interrupted run in {os.path.join(out, 'fold_2')}" in again.stdout
    assert folder_hash(os.path.join(out, "fold_1")) == fold_1
    first = json.load(open(os.path.join(cv_run["out"], cv.SUMMARY_JSON), encoding="utf-8"))
    second = json.load(open(os.path.join(out, cv.SUMMARY_JSON), encoding="utf-8"))
    for a, b in zip(first["per_fold"], second["per_fold"]):
        for key in cv.METRICS:
            assert b[key] == pytest.approx(a[key], abs=1e-5), (a["fold"], key)
    np.testing.assert_allclose(oof_table(out)[3], oof_table(cv_run["out"])[3], atol=1e-5)


@pytest.mark.parametrize("case", ["one_fold", "too_many_folds", "out_in_data", "out_holds_other", "resume_flag"])
def test_refusals_come_before_any_write(colours, tmp_path, case):
    data, _ = colours
    out, folds, extra = str(tmp_path / "cv"), 3, []
    if case == "one_fold":
        folds, needle = 1, "--folds must be >= 2"
    elif case == "too_many_folds":
        folds, needle = PER_CLASS + 1, f"more than the {PER_CLASS} images of class"
    elif case == "out_in_data":
        out, needle = os.path.join(data, "train", "red", "cv"), "inside the data folder"
    elif case == "out_holds_other":
        os.makedirs(out)
        open(os.path.join(out, "notes.txt"), "w").write("mine\n")
        needle = "holds files but no cross-validation"
    else:
        extra, needle = ["--resume", "auto"], "--resume is set by cross_validate.py"
    before, other = folder_hash(data), folder_hash(out) if os.path.isdir(out) else None
    proc = run_main("tools/cross_validate.py", "--folds", folds, "--out", out, "--data_dir", data, *CV_ARGS, *extra)
    assert_one_line_error(proc, needle, code=2)
    assert folder_hash(data) == before
    assert (folder_hash(out) if os.path.isdir(out) else None) == other


def test_another_cv_in_the_same_out_is_refused(cv_run, tmp_path):
    out = str(tmp_path / "copy")
    shutil.copytree(cv_run["out"], out, symlinks=True)
    before = folder_hash(out)
    proc = run_main("tools/cross_validate.py", "--folds", FOLDS, "--seed", "1", "--out", out, "--data_dir",
                    cv_run["data"], *CV_ARGS)
    assert_one_line_error(proc, "holds a cross-validation with other seed", code=2)
    assert folder_hash(out) == before


@pytest.fixture(scope="module")
def ood_run(cv_run, tmp_path_factory):
    """Fold 1's run (copied) validated with --calibrate and --ood_dir: 12 demo clothes (grey) and 4 noise images."""
    base = tmp_path_factory.mktemp("ood")
    run = str(base / "fold_1")
    shutil.copytree(os.path.join(cv_run["out"], "fold_1"), run)
    folder = str(base / "unlike")
    os.makedirs(folder)
    for index in range(12):
        shutil.copy(demo_image(index), folder)
    rng = np.random.default_rng(0)
    for index in range(4):
        noise = rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)
        Image.fromarray(noise).save(os.path.join(folder, f"noise{index}.png"))
    ckpt = json.load(open(os.path.join(run, "summary.json"), encoding="utf-8"))["best_checkpoint"]
    ckpt = os.path.join(run, os.path.basename(ckpt))
    base_args = ["--config", os.path.join(run, "config.yaml"), "--ckpt_path", ckpt]
    proc = run_main("validate.py", *base_args, "--ood_dir", folder, "--calibrate", "True")
    assert proc.returncode == 0, proc.stderr
    report = os.path.join(run, f"report_{os.path.splitext(os.path.basename(ckpt))[0]}_val")
    return dict(run=run, ckpt=ckpt, folder=folder, args=base_args, proc=proc, report=report)


def test_ood_metrics_recomputed_from_the_saved_scores(ood_run):
    rows = read_rows(os.path.join(ood_run["report"], ood.SCORES_FILE))
    assert sum(r["set"] == "ood" for r in rows) == 16 and sum(r["set"] == "split" for r in rows) == 27
    metrics = json.load(open(os.path.join(ood_run["report"], "metrics.json"), encoding="utf-8"))["ood"]
    stored = json.load(open(ood.threshold_path(ood_run["ckpt"]), encoding="utf-8"))
    calibration = json.load(open(os.path.splitext(ood_run["ckpt"])[0] + ".calibration.json", encoding="utf-8"))
    assert metrics["temperature"] == stored["temperature"] == calibration["temperature"] != 1.0  # calibrated scores
    for name in ("msp", "energy"):
        inside = np.array([float(r[name]) for r in rows if r["set"] == "split"])
        outside = np.array([float(r[name]) for r in rows if r["set"] == "ood"])
        auroc = np.mean(inside[:, None] > outside[None, :]) + 0.5 * np.mean(inside[:, None] == outside[None, :])
        threshold = np.sort(inside)[::-1][int(np.ceil(0.95 * len(inside))) - 1]  # keeps 95% of the split
        fpr = np.mean(outside >= threshold)
        assert metrics[name]["auroc"] == pytest.approx(auroc, abs=1e-12) == stored[name]["auroc"]
        assert metrics[name]["fpr_at_95_tpr"] == pytest.approx(fpr, abs=1e-12)
        assert f"OOD {name}: AUROC {auroc:.4f}  FPR at 95% TPR {fpr:.4f}" in ood_run["proc"].stdout
        if name == "msp":
            assert stored["min_prob"] == pytest.approx(threshold, abs=1e-12)
    html = open(os.path.join(ood_run["report"], "report.html"), encoding="utf-8").read()
    assert "Out-of-distribution scores" in html and 'alt="OOD score histograms" src="data:image/png;base64,' in html
    assert_png(os.path.join(ood_run["report"], ood.HISTOGRAM_FILE), 1500, 600)


def test_min_prob_auto_marks_images_below_the_threshold_unknown(ood_run, tmp_path):
    threshold = json.load(open(ood.threshold_path(ood_run["ckpt"]), encoding="utf-8"))["min_prob"]
    proc = run_main("predict.py", *ood_run["args"], "--input", ood_run["folder"], "--min_prob", "auto",
                    "--out", str(tmp_path / "p.csv"))
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(str(tmp_path / "p.csv"))
    assert len(rows) == 16
    scores = {r["image"]: float(r["msp"]) for r in read_rows(os.path.join(ood_run["report"], ood.SCORES_FILE))}
    for row in rows:
        assert (row["pred"] == "unknown") == (float(row["top1_prob"]) < threshold), row
        assert float(row["top1_prob"]) == pytest.approx(scores[row["file"]], abs=1e-5)
    assert 0 < sum(r["pred"] == "unknown" for r in rows) < len(rows)
    assert f"min_prob {threshold:.4f} (--min_prob auto" in proc.stdout


def test_min_prob_auto_refuses_another_temperature_and_reaches_the_export(ood_run, tmp_path):
    proc = run_main("predict.py", *ood_run["args"], "--input", ood_run["folder"], "--min_prob", "auto",
                    "--temperature", "3", "--out_dir", str(tmp_path / "p"))
    assert_one_line_error(proc, "--min_prob auto: the threshold in", "fitted at temperature", code=1)
    assert not os.path.exists(tmp_path / "p")
    stored = json.load(open(ood.threshold_path(ood_run["ckpt"]), encoding="utf-8"))
    export = run_main("export.py", *ood_run["args"], "--format", "ONNX", "--out", str(tmp_path / "model"))
    assert export.returncode == 0, export.stderr
    meta = json.load(open(str(tmp_path / "model" / "model.classes.json"), encoding="utf-8"))   # the bundle
    assert meta["unknown_threshold"]["min_prob"] == stored["min_prob"]
    out = str(tmp_path / "onnx.csv")
    onnx = run_main("predict.py", "--onnx", str(tmp_path / "model" / "model.onnx"), "--input", ood_run["folder"],
                    "--min_prob", "auto", "--out", out)
    assert onnx.returncode == 0, onnx.stderr
    for row in read_rows(out):
        assert (row["pred"] == "unknown") == (float(row["top1_prob"]) < stored["min_prob"]), row


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_an_ood_dir_that_is_no_folder_is_named_before_any_work(tmp_path, kind):
    ood_dir = tmp_path / "unlike"
    if kind == "file":
        ood_dir.write_text("not a folder")
    proc = run_main("validate.py", "--ckpt_path", tmp_path / "m.ckpt", "--ood_dir", ood_dir, "--report_dir",
                    tmp_path / "r")
    assert_one_line_error(proc, "ood_dir not found" if kind == "missing" else "is a file, not a folder", code=1)
    assert not (tmp_path / "r").exists()
