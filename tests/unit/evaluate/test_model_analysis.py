"""Error analysis, calibration, TTA and the run report (issue 16): every metric recomputed here with
plain numpy loops, the temperature shown to lower ECE on an over-confident model, TTA checked on a
network that sees the mirror image, and report.html rendered in headless Chromium."""
import csv
import glob
import json
import math
import os
import re
import shutil
import subprocess

from conftest import (
    FAST,
    SPLIT_TAG,
    TINY_CLASSES,
    assert_one_line_error,
    assert_png,
    read_predictions,
    run_main,
    run_parallel,
    run_script,
)
from tools.evaluate import calibration, metrics
from tools.report import evaluation as reports

import numpy as np
import pytest
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
CKPT = "mobilenet_v3_small_100_last.ckpt"


# ---- metrics, recomputed with loops ----------------------------------------------------------------

def random_predictions(seed, n=300, classes=7):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes - 1, n)                     # the last class never occurs
    preds = np.where(rng.random(n) < 0.6, labels, rng.integers(0, classes, n))
    preds[preds == 2] = 3                                        # class 2 is never predicted
    return labels, preds, classes


def test_precision_recall_f1_match_a_loop():
    labels, preds, classes = random_predictions(0)
    precision, recall, f1, support = metrics.precision_recall_f1(metrics.confusion_matrix(labels, preds, classes))
    f1_present, weights = [], []
    for c in range(classes):
        tp = np.sum((preds == c) & (labels == c))
        fp, fn = np.sum((preds == c) & (labels != c)), np.sum((preds != c) & (labels == c))
        assert support[c] == tp + fn
        assert (np.isnan(precision[c]) and tp + fp == 0) or precision[c] == pytest.approx(tp / (tp + fp))
        assert (np.isnan(recall[c]) and tp + fn == 0) or recall[c] == pytest.approx(tp / (tp + fn))
        if tp + fp and tp + fn and tp:
            p, r = tp / (tp + fp), tp / (tp + fn)
            assert f1[c] == pytest.approx(2 * p * r / (p + r))
        if tp + fn:
            f1_present.append(2 * tp / (2 * tp + fp + fn))
            weights.append(tp + fn)
    assert np.isnan(precision[2]) and f1[2] == 0.0                # present, never predicted: F1 0
    last = classes - 1                                           # never occurs, predicted sometimes
    assert np.isnan(recall[last]) and np.sum(preds == last) > 0 and f1[last] == 0.0 and precision[last] == 0.0
    macro, weighted = metrics.f1_averages(metrics.confusion_matrix(labels, preds, classes))
    assert macro == pytest.approx(np.mean(f1_present))
    assert weighted == pytest.approx(np.average(f1_present, weights=weights))


def test_most_confused_counts_pairs():
    labels, preds, classes = random_predictions(1)
    names = [f"class {i}" for i in range(classes)]
    pairs = metrics.most_confused(metrics.confusion_matrix(labels, preds, classes), names)
    counts = {}
    for t, p in zip(labels, preds):
        if t != p:
            counts[(names[t], names[p])] = counts.get((names[t], names[p]), 0) + 1
    assert {(t, p): n for t, p, n, _ in pairs} == counts
    assert [n for _, _, n, _ in pairs] == sorted(counts.values(), reverse=True)
    for t, _, n, share in pairs:
        assert share == pytest.approx(n / np.sum(labels == names.index(t)))


def loop_ece(probs, labels, bins=15):
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        members = [i for i in range(len(labels)) if lo < probs[i].max() <= hi or (b == 0 and probs[i].max() == 0)]
        if members:
            acc = np.mean([probs[i].argmax() == labels[i] for i in members])
            conf = np.mean([probs[i].max() for i in members])
            total += len(members) / len(labels) * abs(acc - conf)
    return total


def overconfident_model(seed=0, n=2000, classes=10):
    """Logits of a 70%-accurate model, multiplied by 4: far more confident than it is right."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    logits = rng.normal(0, 1, (n, classes))
    right = rng.random(n) < 0.7
    logits[right, labels[right]] += 2.0
    return 4.0 * logits, labels


def test_ece_matches_a_loop():
    logits, labels = overconfident_model(n=500)
    for scale in (1.0, 0.25):
        probs = metrics.softmax(logits * scale)
        assert calibration.expected_calibration_error(probs, labels) == pytest.approx(loop_ece(probs, labels))
    count, accuracy, confidence = calibration.reliability_bins(probs, labels)
    assert count.sum() == len(labels) and len(count) == calibration.ECE_BINS == 15


def test_fitted_temperature_lowers_ece_of_an_overconfident_model():
    logits, labels = overconfident_model()
    temperature = calibration.fit_temperature(logits[None], labels)
    before = calibration.expected_calibration_error(metrics.softmax(logits), labels)
    after = calibration.expected_calibration_error(metrics.softmax(logits / temperature), labels)
    assert temperature > 1.5                     # over-confident: the fit softens the probabilities
    assert after < before / 3, (before, after)
    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 400))
    nll = lambda t: -np.mean(np.log(metrics.softmax(logits / t)[np.arange(len(labels)), labels]))  # noqa: E731
    assert nll(temperature) <= min(nll(t) for t in grid) + 1e-9  # the minimum, found independently


def test_probabilities_average_the_views():
    rng = np.random.default_rng(3)
    views = rng.normal(0, 3, (2, 6, 4))
    probs = calibration.probabilities(views, 2.0)
    for i in range(6):
        expected = [np.exp(v[i] / 2) / np.exp(v[i] / 2).sum() for v in views]
        np.testing.assert_allclose(probs[i], np.mean(expected, axis=0), rtol=1e-12)


def test_highest_loss_errors_order():
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.45, 0.55], [0.2, 0.8]])
    labels = np.array([0, 0, 0, 1])          # 1 and 2 wrong; 1 has the lower true probability
    assert reports.highest_loss_errors(probs, labels, 5).tolist() == [1, 2]
    assert reports.highest_loss_errors(probs, labels, 1).tolist() == [1]


def test_hflip_views_see_the_mirror_image():
    from tools.evaluate.tta import view_logits

    import mindspore as ms
    from mindspore import nn, ops

    class LeftRight(nn.Cell):
        """Logits (mean of the left half, mean of the right half) of channel 0."""

        def construct(self, x):
            half = x.shape[3] // 2
            return ops.stack([x[:, 0, :, :half].mean(axis=(1, 2)), x[:, 0, :, half:].mean(axis=(1, 2))], axis=1)

    images = np.zeros((5, 1, 2, 4), np.float32)
    images[:, 0, :, :2] = np.arange(5)[:, None, None]            # bright on the left
    dataset = ms.dataset.NumpySlicesDataset({"image": images, "label": np.arange(5, dtype=np.int32)},
                                            shuffle=False).batch(2)
    views, labels = view_logits(LeftRight(), dataset, 2, "hflip")
    assert labels.tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(views[0], np.stack([np.arange(5), np.zeros(5)], axis=1))
    np.testing.assert_allclose(views[1], np.stack([np.zeros(5), np.arange(5)], axis=1))   # mirrored
    probs = calibration.probabilities(views)
    np.testing.assert_allclose(probs, 0.5, atol=1e-7)             # symmetric: the mean is uniform


# ---- the scripts on a copy of the tiny run ------------------------------------------------------------

@pytest.fixture(scope="module")
def analysed(tiny_run, tmp_path_factory):
    """validate.py --calibrate with TTA, then export, predict (errors grid, min_prob) and --mindir."""
    out = str(tmp_path_factory.mktemp("analysed"))
    for name in (CKPT, "config.yaml", "training_curves.png"):  # a copy: the calibration file stays here
        shutil.copy(os.path.join(tiny_run["out"], name), out)
    cfg, ckpt = os.path.join(out, "config.yaml"), os.path.join(out, CKPT)
    base = ["--config", cfg, "--ckpt_path", ckpt, *FAST]
    runs = {"validate": run_script("validate.py", *base, "--calibrate", "True", "--tta", "hflip")}
    runs["export"], runs["errors"], runs["raw"] = run_parallel(
        ("export.py", *base, "--out", os.path.join(out, "model")),
        ("predict.py", *base, "--split", "test", "--visualize", "--grid_select", "errors", "--grid_size", "4",
         "--min_prob", "0.5", "--out_dir", os.path.join(out, "errors")),
        ("predict.py", *base, "--split", "test", "--temperature", "1", "--out_dir", os.path.join(out, "raw")))
    _, rows = read_predictions(os.path.join(out, "errors", f"predictions_{SPLIT_TAG}.csv"))
    runs["mindir"] = run_script("predict.py", "--mindir", os.path.join(out, "model", "model.mindir"),   # no --config
                                "--input", *[r["file"] for r in rows], "--out_dir", os.path.join(out, "files"))
    return {"out": out, "report": os.path.join(out, "report_mobilenet_v3_small_100_last_test_hflip"), **runs}


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_scripts_succeed(analysed):
    for name in ("validate", "export", "errors", "raw", "mindir"):
        assert analysed[name].returncode == 0, (name, analysed[name].stderr)


def test_validate_reports_f1_confusions_and_calibration(analysed):
    folder = analysed["report"]
    result = json.load(open(os.path.join(folder, "metrics.json")))
    assert result["tta"] == "hflip" and result["ece_bins"] == 15
    per_class = read_csv(os.path.join(folder, "per_class.csv"))
    f1 = [float(r["f1"]) if r["f1"] else 0.0 for r in per_class]
    support = [int(r["support"]) for r in per_class]
    for r in per_class:
        p, rec = (float(r[k]) if r[k] else None for k in ("precision", "recall"))
        assert rec == pytest.approx(int(r["correct"]) / int(r["support"]), abs=1e-6)
        if p and rec:
            assert float(r["f1"]) == pytest.approx(2 * p * rec / (p + rec), abs=1e-5)
    assert result["macro_f1"] == pytest.approx(np.mean(f1), abs=1e-5)
    assert result["weighted_f1"] == pytest.approx(np.average(f1, weights=support), abs=1e-5)
    stdout = analysed["validate"].stdout
    assert f"macro F1 {result['macro_f1']:.4f}" in stdout and f"ECE {result['ece']:.4f}" in stdout
    matrix = [[int(v) for v in row[1:]]
              for row in list(csv.reader(open(os.path.join(folder, "confusion_matrix.csv"))))[1:]]
    confused = read_csv(os.path.join(folder, "most_confused.csv"))
    expected = sorted(((matrix[i][j], TINY_CLASSES[i], TINY_CLASSES[j]) for i in range(5) for j in range(5)
                       if i != j and matrix[i][j]), key=lambda x: -x[0])
    assert sorted((int(r["count"]), r["true"], r["pred"]) for r in confused) == sorted(expected)
    assert [int(r["count"]) for r in confused] == [n for n, _, _ in expected]
    if confused:
        top = confused[0]
        assert f"confused: {top['true']} -> {top['pred']}: {top['count']} images" in stdout
        assert float(top["share_of_true"]) == pytest.approx(int(top["count"]) / 4)
    stored = json.load(open(os.path.join(analysed["out"], "mobilenet_v3_small_100_last.calibration.json")))
    assert stored["temperature"] == pytest.approx(result["temperature"]) and stored["tta"] == "hflip"
    assert stored["nll_after"] <= stored["nll_before"] + 1e-9          # the fit minimises the NLL
    assert result["loss_calibrated"] == pytest.approx(stored["nll_after"])
    assert_png(os.path.join(folder, "reliability.png"), *(int(v * reports.DPI) for v in reports.RELIABILITY_SIZE))


def test_predict_uses_the_stored_temperature_and_min_prob(analysed):
    temperature = json.load(open(os.path.join(analysed["out"], "mobilenet_v3_small_100_last.calibration.json")))[
        "temperature"]
    tag = SPLIT_TAG
    _, raw = read_predictions(os.path.join(analysed["out"], "raw", f"predictions_{tag}.csv"))
    _, scaled = read_predictions(os.path.join(analysed["out"], "errors", f"predictions_{tag}.csv"))
    assert f"temperature {temperature:.4f} (from " in analysed["errors"].stdout
    unknown = 0
    for a, b in zip(raw, scaled):
        p = {a[f"top{i}"]: float(a[f"top{i}_prob"]) for i in range(1, 6)}    # 5 classes: all of them
        logp = np.log([p[c] for c in TINY_CLASSES]) / temperature            # softmax(z / T) from softmax(z)
        expected = np.exp(logp - logp.max()) / np.exp(logp - logp.max()).sum()
        got = {b[f"top{i}"]: float(b[f"top{i}_prob"]) for i in range(1, 6)}
        np.testing.assert_allclose([got[c] for c in TINY_CLASSES], expected, atol=2e-5)
        assert b["pred"] == ("unknown" if float(b["top1_prob"]) < 0.5 else b["top1"])
        unknown += b["pred"] == "unknown"
    assert f"({unknown} unknown: top probability below 0.5)" in analysed["errors"].stdout
    pred_txt = np.loadtxt(os.path.join(analysed["out"], "errors", f"pred_{tag}.txt"), dtype=int)
    assert (pred_txt[:, 0] == -1).sum() == unknown


def test_error_grid_shows_the_highest_loss_images(analysed):
    _, rows = read_predictions(os.path.join(analysed["out"], "errors", f"predictions_{SPLIT_TAG}.csv"))
    wrong = [r for r in rows if r["true"] != r["top1"]]
    path = os.path.join(analysed["out"], "errors", f"grid_errors_{SPLIT_TAG}.png")
    if not wrong:
        assert not os.path.exists(path) and "no misclassified images" in analysed["errors"].stdout
        return
    shown = min(4, len(wrong))
    nrows, ncols = reports.grid_shape(shown)
    size = int(reports.GRID_CELL_INCHES * reports.DPI)
    assert_png(path, ncols * size, nrows * size)
    chosen = reports.highest_loss_errors(*_probs_and_labels(rows), 4)
    losses = sorted((-math.log(float(r["true_prob"])) for r in wrong), reverse=True)[:shown]
    assert [-math.log(float(rows[i]["true_prob"])) for i in chosen] == pytest.approx(losses)


def test_the_report_shows_where_the_model_looked_in_its_worst_errors(analysed):
    """Grad-CAM rows (answered class, true class) for the worst-loss errors plus the worst image of each of the
    five most-confused pairs: at least min(8, errors) rows, at most 8 + 5."""
    metrics_json = json.load(open(os.path.join(analysed["report"], "metrics.json")))
    wrong = round((1 - metrics_json["top1"]) * metrics_json["num_samples"])
    path = os.path.join(analysed["report"], "error_heatmaps.png")
    if not wrong:
        assert not os.path.exists(path)
        return
    with Image.open(path) as figure:
        width, height = figure.size
    size = int(reports.GRID_CELL_INCHES * reports.DPI)
    assert width == 2 * size and height % size == 0 and min(8, wrong) <= height // size <= min(13, wrong)
    assert "error_heatmaps.png" in analysed["validate"].stdout


def _probs_and_labels(rows):
    probs = np.array([[float(dict((r[f"top{i}"], r[f"top{i}_prob"]) for i in range(1, 6))[c]) for c in TINY_CLASSES]
                      for r in rows])
    return probs, np.array([TINY_CLASSES.index(r["true"]) for r in rows])


def test_export_metadata_and_mindir_without_config(analysed):
    meta = json.load(open(os.path.join(analysed["out"], "model", "model.classes.json")))
    stored = json.load(open(os.path.join(analysed["out"], "mobilenet_v3_small_100_last.calibration.json")))
    assert meta["temperature"] == pytest.approx(stored["temperature"])
    assert meta["class_names"] == TINY_CLASSES and meta["input_shape"] == [1, 3, 32, 32]
    prep = meta["preprocessing"]
    assert (prep["resize"], prep["crop"], prep["crop_pct"]) == (32, 32, 1.0)      # the tiny run's config
    assert (prep["mean"] == pytest.approx([123.675, 116.28, 103.53])
            and prep["std"] == pytest.approx([58.395, 57.12, 57.375]))
    assert len(meta["parity_check"]["images"]) == 4 and meta["parity_check"]["max_abs_prob_diff"] <= 1e-4
    assert "parity check: MindIR = checkpoint on 4 images" in analysed["export"].stdout
    _, ckpt_rows = read_predictions(os.path.join(analysed["out"], "errors", f"predictions_{SPLIT_TAG}.csv"))
    (mindir_file,) = glob.glob(os.path.join(analysed["out"], "files", "predictions_model_files-*.csv"))
    _, mindir_rows = read_predictions(mindir_file)
    assert [r["file"] for r in mindir_rows] == [r["file"] for r in ckpt_rows] and len(mindir_rows) == 20
    for a, b in zip(ckpt_rows, mindir_rows):   # both with the stored temperature, no TTA
        assert a["top1"] == b["top1"] and b["true"] == ""
        np.testing.assert_allclose([float(a[f"top{i}_prob"]) for i in range(1, 6)],
                                   [float(b[f"top{i}_prob"]) for i in range(1, 6)], atol=1e-5)


def test_export_refuses_a_mindir_that_does_not_match(analysed, tmp_path, capsys):
    """The parity check itself: a network changed after export is caught, naming the checkpoint."""
    import export
    from tools.core.config import parse_config
    from tools.core.errors import DataError
    from tools.models.factory import checkpoint_network, read_checkpoint

    import mindspore as ms

    ms.set_context(mode=1)
    cfg = parse_config(["--config", os.path.join(analysed["out"], "config.yaml"),
                        "--ckpt_path", os.path.join(analysed["out"], CKPT)], "t", extra=export.EXTRA)
    network = checkpoint_network(cfg, read_checkpoint(cfg.ckpt_path), TINY_CLASSES)
    mindir = os.path.join(analysed["out"], "model", "model.mindir")
    assert export.check_parity(cfg, network, mindir, TINY_CLASSES)
    weight = network.trainable_params()[-2]                                # the last layer, changed a little
    assert weight.name.endswith("weight") and weight.ndim == 2
    noise = np.random.default_rng(0).normal(0, 1e-3, weight.shape).astype(np.float32)
    weight.set_data(ms.Tensor(weight.asnumpy() + noise))
    with pytest.raises(DataError, match="does not match .* on 4 images: logits differ by up to"):
        export.check_parity(cfg, network, mindir, TINY_CLASSES)
    cfg.data_dir = str(tmp_path / "gone")                                  # nothing to check on: a warning
    assert export.check_parity(cfg, network, mindir, TINY_CLASSES) is None
    assert "warning: parity check skipped (data_dir not found" in capsys.readouterr().err


def test_a_failed_parity_check_replaces_nothing(analysed, monkeypatch):
    import export
    from tools.core.errors import DataError

    def mismatch(*args):
        raise DataError("the exported MindIR does not match")

    bundle = os.path.join(analysed["out"], "model")
    files = {name: open(os.path.join(bundle, name), "rb").read() for name in os.listdir(bundle)}
    monkeypatch.setattr(export, "check_parity", mismatch)
    with pytest.raises(DataError, match="does not match"):
        export.main(["--config", os.path.join(analysed["out"], "config.yaml"), "--mode", "1",
                     "--ckpt_path", os.path.join(analysed["out"], CKPT),
                     "--out", os.path.join(analysed["out"], "model")])
    assert sorted(os.listdir(bundle)) == sorted(files)
    for name, data in files.items():
        assert open(os.path.join(bundle, name), "rb").read() == data
    assert not glob.glob(os.path.join(analysed["out"], "*.partial*"))


def test_stale_or_bad_calibration_is_ignored_with_a_warning(analysed, tmp_path):
    ckpt = str(tmp_path / CKPT)
    shutil.copy(os.path.join(analysed["out"], CKPT), ckpt)
    shutil.copy(os.path.join(analysed["out"], "mobilenet_v3_small_100_last.calibration.json"),
                calibration.calibration_path(ckpt))
    assert calibration.stored_temperature(ckpt)[0] > 0               # same bytes: used
    with open(ckpt, "ab") as f:
        f.write(b"\0")                                               # another version of the checkpoint
    assert calibration.stored_temperature(ckpt) == (None, None)
    open(calibration.calibration_path(ckpt), "w").write("{not json")
    assert calibration.resolve_temperature(0.0, ckpt) == (1.0, None)
    assert calibration.resolve_temperature(2.5, ckpt) == (2.5, "--temperature")


def test_bad_analysis_flags_are_one_line_errors(analysed, tmp_path):
    base = ["--config", os.path.join(analysed["out"], "config.yaml"),
            "--ckpt_path", os.path.join(analysed["out"], CKPT)]
    tta = run_main("validate.py", *base, "--tta", "vflip")
    select = run_main("predict.py", *base, "--input", str(tmp_path), "--grid_select", "errors")
    prob = run_main("predict.py", *base, "--min_prob", "1.5")
    assert_one_line_error(tta, "tta", "expected one of none, hflip", code=2)
    assert_one_line_error(select, "--grid_select errors", "split", code=2)
    assert_one_line_error(prob, "min_prob", "[0, 1]", code=2)


# ---- report.html ---------------------------------------------------------------------------------------

def test_report_is_self_contained(analysed):
    page = open(os.path.join(analysed["report"], "report.html"), encoding="utf-8").read()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)|url\(\s*["']?https?:|@import""", page)
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,', page)
    errors = os.path.exists(os.path.join(analysed["report"], "error_grid.png"))
    assert images == ["training curves", "confusion matrix", "reliability diagram"] + (
        ["error grid", "Grad-CAM heatmaps"] if errors else [])
    for name in TINY_CLASSES:
        assert f"<td>{name}</td>" in page
    for heading in ("Configuration", "Training curves", "Metrics", "Per-class metrics", "Confusion matrix",
                    "Most confused pairs", "Calibration", "Highest-loss errors"):
        assert f"<h2>{heading}" in page


def test_report_renders_in_headless_chromium(analysed, tmp_path):
    assert os.path.exists(CHROMIUM), "Chromium is missing: `make test` installs it (apt-get install chromium)"
    shot = str(tmp_path / "report.png")
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-component-update", "--disable-sync", "--no-first-run",
                           f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars", "--window-size=1200,4000",
                           f"--screenshot={shot}", "file://" + os.path.join(analysed["report"], "report.html")],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0 and os.path.isfile(shot), proc.stderr[-2000:]
    assert_png(shot, 1200, 4000)
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int32)
    blue = (pixels[..., 2] > pixels[..., 0] + 60).mean()              # the confusion matrix's "Blues" cells
    assert blue > 0.005, blue
