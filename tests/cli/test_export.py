"""export.py: MindIR + class names, ONNX where MindSpore can, and predict.py --mindir parity."""
import json
import os

from conftest import SPLIT_TAG, TINY_CLASSES, assert_one_line_error, read_predictions, run_parallel, run_script

import numpy as np


def test_mindir_and_class_names_are_written(trained_run):
    assert os.path.isfile(os.path.join(trained_run["out"], "model.mindir")), trained_run["export"].stderr
    info = json.load(open(os.path.join(trained_run["out"], "model.classes.json")))
    assert info["class_names"] == TINY_CLASSES
    assert info["input_shape"] == [1, 3, 32, 32]


def test_onnx_is_written_or_refused_in_one_line(trained_run, tmp_path):
    """``--format both --out DIR/``: the bundle is named after the checkpoint inside DIR, written whole or not
    at all."""
    folder = tmp_path / "both"
    proc = run_script("export.py", "--config", os.path.join(trained_run["out"], "config.yaml"), "--ckpt_path",
                      os.path.join(trained_run["out"], "mobilenet_v3_small_100_best.ckpt"), "--format", "both",
                      "--parity_count", "1", "--mode", "1", "--out", str(folder) + os.sep)
    bundle = ["mobilenet_v3_small_100_best" + ext for ext in (".classes.json", ".mindir", ".onnx")]
    if proc.returncode == 0:
        assert sorted(os.listdir(folder)) == bundle
        assert os.path.getsize(os.path.join(folder, bundle[2])) > 0
    else:  # MobileNetV3's HSwish has no ONNX converter in MindSpore 2.7 (CPU): no MindIR either
        assert_one_line_error(proc, "ONNX export is not available for mobilenet_v3_small_100", code=1)
        assert not os.path.exists(folder)


def test_mindir_predictions_equal_checkpoint_predictions(trained_run):
    assert trained_run["mindir"].returncode == 0, trained_run["mindir"].stderr
    _, ckpt_rows = read_predictions(os.path.join(trained_run["dirs"]["split"], f"predictions_{SPLIT_TAG}.csv"))
    _, mindir_rows = read_predictions(os.path.join(trained_run["dirs"]["mindir"], "predictions_model_test.csv"))
    assert len(mindir_rows) == len(ckpt_rows) == 4 * len(TINY_CLASSES)
    k = len(TINY_CLASSES)
    for a, b in zip(ckpt_rows, mindir_rows):
        assert (a["file"], a["true"]) == (b["file"], b["true"])
        assert [a[f"top{i}"] for i in range(1, k + 1)] == [b[f"top{i}"] for i in range(1, k + 1)]
        np.testing.assert_allclose([float(a[f"top{i}_prob"]) for i in range(1, k + 1)],
                                   [float(b[f"top{i}_prob"]) for i in range(1, k + 1)], atol=1e-5)


def test_output_base_strips_known_extensions():
    from argparse import Namespace

    from export import output_base

    assert output_base(Namespace(out="", ckpt_path="runs/x_best.ckpt")) == "runs/x_best"
    assert output_base(Namespace(out="out/model.mindir", ckpt_path="x.ckpt")) == "out/model"
    assert output_base(Namespace(out="out/model.v2", ckpt_path="x.ckpt")) == "out/model.v2"
    assert output_base(Namespace(out="out/", ckpt_path="runs/x_best.ckpt")) == os.path.join("out", "x_best")


def test_export_errors_are_one_line(trained_run, tmp_path):
    cfg = os.path.join(trained_run["out"], "config.yaml")
    bad_format, missing = run_parallel(("export.py", "--config", cfg, "--format", "tflite"),
                                       ("export.py", "--config", cfg, "--ckpt_path", tmp_path / "none.ckpt"))
    assert_one_line_error(bad_format, "expected one of MINDIR, ONNX, BOTH (any case)", code=2)
    assert_one_line_error(missing, "checkpoint not found", code=1)
