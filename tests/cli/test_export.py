"""export.py: MindIR + ONNX + class names, each checked against the checkpoint (ONNX in ONNX Runtime), and
predict.py --mindir / --onnx parity."""
import json
import os

from conftest import (
    CKPT_NAME,
    SPLIT_TAG,
    TINY_CLASSES,
    assert_one_line_error,
    read_predictions,
    run_main,
    run_parallel,
    run_script,
)

import numpy as np

BUNDLE = ["README.md", "model.classes.json", "model.mindir", "model.onnx", "predict.py", "requirements.txt"]


def test_mindir_and_class_names_are_written(trained_run):
    assert os.path.isfile(os.path.join(trained_run["bundle"], "model.mindir")), trained_run["export"].stderr
    info = json.load(open(os.path.join(trained_run["bundle"], "model.classes.json")))
    assert info["class_names"] == TINY_CLASSES
    assert info["input_shape"] == [1, 3, 32, 32]


def test_both_formats_are_written_and_checked(trained_run, tmp_path):
    """``--format`` defaults to both; ``--out DIR/`` names the bundle folder. The MobileNetV3's HSwish/HSigmoid
    are rewritten for ONNX and the ONNX file is checked in ONNX Runtime."""
    folder = tmp_path / "both"
    proc = run_script("export.py", "--config", os.path.join(trained_run["out"], "config.yaml"), "--ckpt_path",
                      os.path.join(trained_run["out"], "mobilenet_v3_small_100_best.ckpt"),
                      "--parity_count", "2", "--mode", "1", "--out", str(folder) + os.sep)
    assert proc.returncode == 0, proc.stderr
    bundle = BUNDLE
    assert sorted(os.listdir(folder)) == bundle
    modes = {name: os.stat(folder / name).st_mode & 0o777 for name in bundle}
    assert len(set(modes.values())) == 1 and modes["model.mindir"] & 0o600 == 0o600, modes   # the umask's, as the JSON
    assert os.stat(folder).st_mode & 0o777 == 0o777 & ~_umask()   # not the 0700 MindSpore's ONNX export sets
    assert "parity check: MindIR = checkpoint on 2 images" in proc.stdout
    assert "parity check: ONNX (ONNX Runtime 1.32.0) = checkpoint on 2 images" in proc.stdout
    parity = json.load(open(folder / "model.classes.json"))["parity_check"]
    assert sorted(parity["per_format"]) == ["MINDIR", "ONNX"] and len(parity["images"]) == 2
    assert parity["max_abs_prob_diff"] == max(f["max_abs_prob_diff"] for f in parity["per_format"].values()) <= 1e-4


def _predictions(path):
    _, rows = read_predictions(path)
    k = len(TINY_CLASSES)
    return ([(r["file"], r["true"], *[r[f"top{i}"] for i in range(1, k + 1)]) for r in rows],
            np.array([[float(r[f"top{i}_prob"]) for i in range(1, k + 1)] for r in rows]))


def test_onnx_predictions_equal_checkpoint_predictions(trained_run, tiny_aircraft, tmp_path):
    """predict.py --onnx (ONNX Runtime, no config) on the test split: the checkpoint's classes and probabilities."""
    proc = run_script("predict.py", "--onnx", os.path.join(trained_run["bundle"], "model.onnx"), "--data_dir",
                      tiny_aircraft, "--split", "test", "--out_dir", tmp_path)
    assert proc.returncode == 0, proc.stderr
    ckpt_names, ckpt_probs = _predictions(os.path.join(trained_run["dirs"]["split"], f"predictions_{SPLIT_TAG}.csv"))
    onnx_names, onnx_probs = _predictions(tmp_path / "predictions_model_onnx_test.csv")
    assert onnx_names == ckpt_names and len(onnx_names) == 4 * len(TINY_CLASSES)
    np.testing.assert_allclose(onnx_probs, ckpt_probs, atol=1e-5)


def test_onnx_metrics_equal_checkpoint_metrics(trained_run, tiny_aircraft, tmp_path):
    """validate.py --onnx (no config, no checkpoint): the checkpoint's metrics on the same split, its report."""
    proc = run_script("validate.py", "--onnx", os.path.join(trained_run["bundle"], "model.onnx"), "--data_dir",
                      tiny_aircraft, "--split", "test", "--out", tmp_path / "metrics.json",
                      "--report_dir", tmp_path / "report")
    assert proc.returncode == 0, proc.stderr
    ckpt = json.load(open(os.path.join(trained_run["out"], "metrics.json")))
    onnx = json.load(open(tmp_path / "metrics.json"))
    assert onnx["checkpoint"].endswith("model.onnx") and onnx["model"] == ckpt["model"] == "mobilenet_v3_small_100"
    for key in ("num_samples", "num_classes", "top1", "per_class"):
        assert onnx[key] == ckpt[key], key
    for key in ("loss", "macro_f1", "ece"):
        assert abs(onnx[key] - ckpt[key]) < 1e-5, key
    assert os.path.isfile(tmp_path / "report" / "report.html")


def test_onnx_flag_errors_are_one_line(trained_run):
    onnx = os.path.join(trained_run["bundle"], "model.onnx")
    assert_one_line_error(run_main("validate.py", "--onnx", onnx, "--calibrate", "True"), "--calibrate", code=2)
    assert_one_line_error(run_main("predict.py", "--onnx", onnx, "--mindir", onnx), "--mindir or --onnx", code=2)
    assert_one_line_error(run_main("predict.py", "--onnx", onnx, "--image_resize", "64"),
                          "takes 32x32 images but image_resize is 64", code=2)
    gone = os.path.join(trained_run["out"], "gone", "model.onnx")
    assert_one_line_error(run_main("validate.py", "--onnx", gone), "ONNX not found", code=1)


def test_an_onnx_mismatch_stops_and_leaves_the_earlier_export(trained_run, tmp_path, monkeypatch):
    """A planted difference in ONNX Runtime's output: one line naming ONNX, the earlier bundle byte-identical."""
    from tools.evaluate.onnx_export import OnnxRuntimeModel

    import mindspore as ms

    args = ("export.py", "--config", os.path.join(trained_run["out"], "config.yaml"), "--ckpt_path",
            os.path.join(trained_run["out"], CKPT_NAME), "--parity_count", "2", "--mode", "1",
            "--out", tmp_path / "model")
    assert run_main(*args).returncode == 0
    folder = tmp_path / "model"
    before = {name: (folder / name).read_bytes() for name in os.listdir(folder)}
    assert sorted(before) == BUNDLE
    run = OnnxRuntimeModel.__call__

    def shifted(self, images):
        logits = run(self, images).asnumpy()
        return ms.Tensor(logits + 0.01 * np.arange(logits.shape[1], dtype=np.float32))

    monkeypatch.setattr(OnnxRuntimeModel, "__call__", shifted)
    assert_one_line_error(run_main(*args), "the exported ONNX does not match", "logits differ by up to",
                          "nothing was replaced", code=1)
    assert {name: (folder / name).read_bytes() for name in os.listdir(folder)} == before
    assert os.listdir(tmp_path) == ["model"]   # no staging folder left


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


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_export_errors_are_one_line(trained_run, tmp_path):
    cfg = os.path.join(trained_run["out"], "config.yaml")
    bad_format, missing = run_parallel(("export.py", "--config", cfg, "--format", "tflite"),
                                       ("export.py", "--config", cfg, "--ckpt_path", tmp_path / "none.ckpt"))
    assert_one_line_error(bad_format, "expected one of MINDIR, ONNX, BOTH (any case)", code=2)
    assert_one_line_error(missing, "checkpoint not found", code=1)
