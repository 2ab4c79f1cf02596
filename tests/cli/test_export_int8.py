"""export.py --quantize int8: model.int8.onnx beside model.onnx in the bundle, the figures in the metadata equal
what validate.py and predict.py --onnx compute from each file on the split; a failed quantisation replaces nothing;
the refusals."""
import json
import os

from conftest import CKPT_NAME, FAST, TINY_CLASSES, assert_one_line_error, read_predictions, run_main

import numpy as np


def _export_args(tiny_run, out, *extra):
    return ("export.py", "--config", os.path.join(tiny_run["out"], "config.yaml"), "--ckpt_path",
            os.path.join(tiny_run["out"], CKPT_NAME), "--format", "ONNX", "--quantize", "int8", "--calibration_count",
            "8", "--parity_count", "2", *FAST, "--out", out, *extra)


def _top1_column(path):
    _, rows = read_predictions(path)
    return [row["top1"] for row in rows], [row["true"] for row in rows]


def test_int8_figures_equal_validate_and_predict_on_each_file(tiny_run, tiny_aircraft, tmp_path):
    bundle = tmp_path / "model"
    proc = run_main(*_export_args(tiny_run, bundle))
    assert proc.returncode == 0, proc.stderr
    assert {"model.classes.json", "model.int8.onnx", "model.onnx"} <= set(os.listdir(bundle))
    int8 = json.load(open(bundle / "model.classes.json"))["int8"]
    assert int8["file"] == "model.int8.onnx" and int8["split"] == "test" and int8["calibration_images"] == 8
    assert int8["num_samples"] == 4 * len(TINY_CLASSES)
    assert int8["size_bytes_int8"] == os.path.getsize(bundle / "model.int8.onnx") < int8["size_bytes_float"]
    assert f"agreement   {int8['agreement']:.4f}" in proc.stdout and f"exported {bundle / 'model.int8.onnx'}" in \
        proc.stdout
    assert "model.int8.onnx" in (bundle / "README.md").read_text()                 # the model card lists it
    top1, preds = {}, {}
    for name in ("model.onnx", "model.int8.onnx"):    # each file alone, through the suite's --onnx paths
        metrics = tmp_path / f"{name}.metrics.json"
        assert run_main("validate.py", "--onnx", bundle / name, "--data_dir", tiny_aircraft, "--split", "test",
                        "--out", metrics, "--report_dir", tmp_path / f"report_{name}").returncode == 0
        top1[name] = json.load(open(metrics))["top1"]
        out = tmp_path / f"{name}.csv"
        assert run_main("predict.py", "--onnx", bundle / name, "--data_dir", tiny_aircraft, "--split", "test",
                        "--out", out, "--out_dir", tmp_path / "pred").returncode == 0
        preds[name] = _top1_column(out)
    assert (top1["model.onnx"], top1["model.int8.onnx"]) == (int8["top1_float"], int8["top1_int8"])
    (float_top1, truth), (int8_top1, _) = preds["model.onnx"], preds["model.int8.onnx"]
    assert int8["top1_int8"] == float(np.mean(np.array(int8_top1) == np.array(truth)))
    assert int8["agreement"] == float(np.mean(np.array(float_top1) == np.array(int8_top1)))


def test_a_failed_quantisation_leaves_the_earlier_export(tiny_run, tmp_path, monkeypatch):
    from tools.deploy import quantize

    bundle = tmp_path / "model"
    args = _export_args(tiny_run, bundle)
    assert run_main(*args).returncode == 0
    before = {name: (bundle / name).read_bytes() for name in os.listdir(bundle)}
    assert "model.int8.onnx" in before

    def planted(*_):
        raise RuntimeError("planted failure")

    monkeypatch.setattr(quantize, "quantize_static_int8", planted)
    assert_one_line_error(run_main(*args), "int8 quantisation of model.onnx failed: planted failure",
                          "nothing was replaced", code=1)
    assert {name: (bundle / name).read_bytes() for name in os.listdir(bundle)} == before


def test_int8_refusals_are_one_line_and_write_nothing(tiny_run, tmp_path):
    out = tmp_path / "out" / "model"
    assert_one_line_error(run_main(*_export_args(tiny_run, out, "--format", "MINDIR")),
                          "--quantize int8 quantises the ONNX file: --format MINDIR writes none", code=2)
    assert_one_line_error(run_main(*_export_args(tiny_run, out, "--val_split", "nosuchsplit")),
                          "--quantize int8 calibrates and measures on val_split 'nosuchsplit'", code=2)
    assert_one_line_error(run_main(*_export_args(tiny_run, out, "--calibration_count", "0")),
                          "'calibration_count' must be > 0, got 0", code=2)
    assert_one_line_error(run_main(*_export_args(tiny_run, out, "--quantize", "int4")),
                          "expected one of none, int8", code=2)
    assert_one_line_error(run_main(*_export_args(tiny_run, out, "--task", "multilabel", "--loss", "bce",
                                                 "--best_metric", "map")),
                          "--quantize int8 reports Top-1 and top-1 agreement: not available with 'task: multilabel'",
                          code=2)
    assert not os.path.exists(tmp_path / "out")
