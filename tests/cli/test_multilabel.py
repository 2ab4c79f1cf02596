"""Multi-label end to end (task: multilabel) on tiny Fashion-MNIST mosaics (tools/datasets/mosaic_data.py):
finetune.py's results and checkpoints, validate.py's metrics.json against a numpy recomputation from predict.py's
probability columns, the tuned thresholds carried into predict.py and export.py's metadata, and the refusals."""
import json
import os

from conftest import DEMO, TINY_TRAIN_ARGS, assert_one_line_error, read_csv, read_predictions, run_main, run_script
from tools.datasets.mosaic_data import make_mosaic_data

import numpy as np
import pytest

MULTILABEL = ["--task", "multilabel", "--loss", "bce", "--best_metric", "map"]
MODEL = "mobilenet_v3_small_100"


@pytest.fixture(scope="module")
def mosaic_run(tmp_path_factory):
    """Tiny mosaics, a 2-epoch multi-label run with mixup, label smoothing and balanced positive weights, then
    validate.py --tune_thresholds and predict.py on its val split."""
    data = str(tmp_path_factory.mktemp("mosaics") / "data")
    make_mosaic_data(data, DEMO, train=16, val=12, seed=1)
    out = str(tmp_path_factory.mktemp("mosaic_run"))
    args = [a for a in TINY_TRAIN_ARGS if a not in ("trainval", "test")]
    args = [arg for i, arg in enumerate(args) if arg not in ("--train_split", "--val_split")]
    train = run_script("finetune.py", "--data_dir", data, *args, *MULTILABEL, "--mixup", "0.2", "--label_smoothing",
                       "0.1", "--class_weights", "balanced", "--ckpt_save_dir", out)
    assert train.returncode == 0, train.stderr
    base = ["--config", os.path.join(out, "config.yaml"), "--ckpt_path", os.path.join(out, f"{MODEL}_best.ckpt"),
            "--mode", "1"]
    validate = run_script("validate.py", *base, "--tune_thresholds", "True", "--out", os.path.join(out, "m.json"))
    assert validate.returncode == 0, validate.stderr
    predict = run_script("predict.py", *base, "--split", "val", "--visualize", "True")
    assert predict.returncode == 0, predict.stderr
    return dict(data=data, out=out, base=base, train=train, validate=validate, predict=predict)


def test_training_shows_map_and_f1_per_epoch_and_keeps_the_best_by_map(mosaic_run):
    out = mosaic_run["out"]
    table = read_csv(os.path.join(out, "results.csv"))
    assert table[0] == ["epoch", "train_loss", "val_loss", "map", "f1", "lr", "seconds"] and len(table) == 3
    lines = [line for line in mosaic_run["train"].stdout.splitlines() if line.startswith("epoch 2/2  ")]
    assert " map " in lines[0] and " f1 " in lines[0] and "top1" not in lines[0]
    summary = json.load(open(os.path.join(out, "summary.json")))
    best = max(table[1:], key=lambda row: float(row[3]))
    assert summary["best_metric"] == "map" and summary["best_epoch"] == int(best[0])
    assert summary["best_checkpoint"] == os.path.join(out, f"{MODEL}_best.ckpt")
    assert "labels per image min" in mosaic_run["train"].stdout  # the balance line of a multi-label split


def test_validate_metrics_equal_a_numpy_recomputation_from_predict_probabilities(mosaic_run):
    out = mosaic_run["out"]
    metrics = json.load(open(os.path.join(out, "m.json")))
    header, rows = read_predictions(os.path.join(out, f"predictions_{MODEL}_best_val.csv"))
    names = [column.removeprefix("prob:") for column in header[3:]]
    assert header[:3] == ["file", "true", "pred"] and names == list(metrics["per_class"])
    probs = np.array([[float(row["prob:" + n]) for n in names] for row in rows])
    truth = np.array([[n in row["true"].split(";") for n in names] for row in rows])
    cuts = np.array([metrics["per_class"][n]["threshold"] for n in names])
    stored = json.load(open(os.path.join(out, f"{MODEL}_best.thresholds.json")))["thresholds"]
    assert [stored[n] for n in names] == pytest.approx(cuts.tolist())
    predicted = probs >= cuts  # the csv holds the probabilities exactly
    assert [row["pred"] for row in rows] == [";".join(n for n, on in zip(names, p) if on) for p in predicted]
    tp, fp, fn = (predicted & truth).sum(), (predicted & ~truth).sum(), (~predicted & truth).sum()
    assert metrics["micro_f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn), abs=1e-9)
    assert metrics["exact_match"] == pytest.approx(np.mean((predicted == truth).all(axis=1)), abs=1e-9)
    aps = []
    for c, name in enumerate(names):
        if not truth[:, c].any():
            assert metrics["per_class"][name]["ap"] is None and name in metrics["classes_without_positives"]
            continue
        ap, previous = 0.0, 0.0  # sum over distinct thresholds t, highest first, of (R(t) - R(before)) P(t)
        for t in sorted(set(probs[:, c]), reverse=True):
            hits = (probs[:, c] >= t) & truth[:, c]
            recall = hits.sum() / truth[:, c].sum()
            ap, previous = ap + (recall - previous) * hits.sum() / (probs[:, c] >= t).sum(), recall
        aps.append(ap)
        assert metrics["per_class"][name]["ap"] == pytest.approx(ap, abs=1e-12)
    assert metrics["map"] == pytest.approx(np.mean(aps), abs=1e-12)
    line = [ln for ln in mosaic_run["validate"].stdout.splitlines() if ln.startswith(f"{MODEL} on val")][0]
    assert f"mAP {metrics['map']:.4f}" in line and "exact match" in line and "micro F1" in line
    report = os.path.join(out, f"report_{MODEL}_best_val")
    assert sorted(os.listdir(report)) == ["metrics.json", "per_class.csv", "precision_recall.png", "report.html"]
    assert read_csv(os.path.join(report, "per_class.csv"))[0] == ["class", "support", "ap", "precision", "recall",
                                                                   "f1", "threshold"]


def test_export_carries_the_task_and_the_thresholds_and_the_mindir_predicts_the_same(mosaic_run):
    out, base = mosaic_run["out"], mosaic_run["base"]
    export = run_script("export.py", *base, "--format", "MINDIR", "--out", os.path.join(out, "model"))
    assert export.returncode == 0, export.stderr
    meta = json.load(open(os.path.join(out, "model", "model.classes.json")))                   # the bundle
    stored = json.load(open(os.path.join(out, f"{MODEL}_best.thresholds.json")))["thresholds"]
    assert meta["task"] == "multilabel" and meta["thresholds"] == [stored[n] for n in meta["class_names"]]
    mindir = run_script("predict.py", "--mindir", os.path.join(out, "model", "model.mindir"), "--data_dir",
                        mosaic_run["data"], "--split", "val", "--out_dir", os.path.join(out, "mindir"), "--mode", "1")
    assert mindir.returncode == 0, mindir.stderr
    assert "thresholds from the exported metadata" in mindir.stdout
    _, ckpt_rows = read_predictions(os.path.join(out, f"predictions_{MODEL}_best_val.csv"))
    _, mindir_rows = read_predictions(os.path.join(out, "mindir", "predictions_model_val.csv"))
    for a, b in zip(ckpt_rows, mindir_rows):  # (a tiny model's probabilities sit on the thresholds: compare sets
        assert all(abs(float(a[k]) - float(b[k])) < 1e-4 for k in a if k.startswith("prob:"))  # made from its own)
        assert b["pred"] == ";".join(n for n, t in zip(meta["class_names"], meta["thresholds"])
                                     if float(b["prob:" + n]) >= t)


def test_multilabel_on_an_annotation_layout_is_one_line(tiny_aircraft):
    proc = run_main("finetune.py", "--data_dir", tiny_aircraft, *TINY_TRAIN_ARGS, *MULTILABEL, "--dry_run", "True")
    assert_one_line_error(proc, "'task: multilabel' needs the list layout", "annotation layout", code=2)


def test_tune_thresholds_of_a_single_label_model_is_refused(mosaic_run):
    proc = run_main("validate.py", "--ckpt_path", os.path.join(mosaic_run["out"], f"{MODEL}_best.ckpt"),
                    "--tune_thresholds", "True")
    assert_one_line_error(proc, "--tune_thresholds is for multi-label models (task: multilabel)", code=2)


def test_data_report_counts_images_per_label_and_labels_per_image(mosaic_run, tmp_path):
    config = tmp_path / "ml.yaml"
    config.write_text("task: multilabel\nloss: bce\nbest_metric: map\n")
    proc = run_main("tools/data_report.py", "--data_dir", mosaic_run["data"], "--config", config, "--out_dir",
                    tmp_path / "report")
    assert proc.returncode == 0, proc.stderr
    report = (tmp_path / "report" / "data_report.md").read_text()
    train = read_csv(os.path.join(mosaic_run["data"], "train.csv"))[1:]
    per_image = [len(label.split(";")) if label else 0 for _, label in train]
    assert (f"split 'train': {len(train)} images, 10 labels; " in report
            and f"labels per image min {min(per_image)} / mean {np.mean(per_image):.2f} / max {max(per_image)}, "
                f"{per_image.count(0)} without a label" in report)
    bag = sum("Bag" in label.split(";") for _, label in train)
    assert any(line.startswith(f"| Bag | {bag} |") for line in report.splitlines())


@pytest.mark.parametrize("script", ["validate.py", "predict.py", "export.py"])
def test_a_multilabel_checkpoint_read_as_single_label_is_refused(mosaic_run, script, tmp_path):
    """The checkpoint carries its task: a config without ``task: multilabel`` would read its sigmoid outputs as a
    softmax, so the scripts refuse it in one line (before writing anything)."""
    proc = run_main(script, "--data_dir", mosaic_run["data"], "--dataset_format", "list", "--ckpt_path",
                    os.path.join(mosaic_run["out"], f"{MODEL}_best.ckpt"), "--model", MODEL,
                    "--out_dir" if script == "predict.py" else "--out", tmp_path / "o")
    assert_one_line_error(proc, "was trained with task: multilabel, this config has task: single", code=2)
    assert not (tmp_path / "o").exists()
