"""tools/lr_find.py: on a problem whose working lr range is found by brute force the suggestion falls inside
it; the command writes its table and figure and leaves the run folders alone."""
import csv
import os

from conftest import TINY_TRAIN_ARGS, assert_one_line_error, assert_png, run_main, run_script
from tools.lr_find import EXTRA
from tools.train.lr_finder import ramp, range_test, suggest

import numpy as np
import pytest
from mindcv.loss import create_loss
from mindspore import Tensor, nn


def blobs():
    rng = np.random.default_rng(1)
    centres = np.array([[0, 0], [2, 0], [0, 2]])
    x = np.concatenate([rng.normal(c, 1.0, (100, 2)) for c in centres])
    x = (x - x.mean(0)) / x.std(0)
    return x.astype(np.float32), np.repeat(np.arange(3), 100).astype(np.int32)


def numpy_gd_loss(x, y, lr, steps=30):
    """Cross-entropy after ``steps`` full-batch gradient steps of softmax regression from zero (numpy)."""
    w, b = np.zeros((2, 3)), np.zeros(3)
    onehot = np.eye(3)[y]
    for _ in range(steps):
        logits = x @ w + b
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        grad = (p - onehot) / len(y)
        w, b = w - lr * x.T @ grad, b - lr * grad.sum(0)
    logits = x @ w + b
    with np.errstate(over="ignore", invalid="ignore"):
        log_p = (logits - logits.max(1, keepdims=True)
                 - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)))
    return float(-log_p[np.arange(len(y)), y].mean())


@pytest.mark.parametrize("mode", [0], indirect=True)
def test_suggestion_falls_in_the_working_range(mode):
    x, y = blobs()
    start = numpy_gd_loss(x, y, 0.0)
    grid = np.geomspace(1e-3, 1e2, 41)
    working = [lr for lr in grid if numpy_gd_loss(x, y, lr) < 0.6 * start]       # finite and well down
    assert working and working[0] > 1e-3 and working[-1] < 1e2      # the range is bounded on both sides
    net = nn.Dense(2, 3, weight_init="zeros", bias_init="zeros")
    lrs = ramp(1e-4, 1e3, 100)
    step = nn.TrainOneStepCell(nn.WithLossCell(net, create_loss(name="ce")), nn.SGD(net.trainable_params(), lrs))
    rows = range_test(step, lambda: [(Tensor(x), Tensor(y))], lrs, smoothing=0.9, diverge=4.0)
    assert len(rows) < len(lrs)                                        # it stopped on divergence
    steepest, min_over_10 = suggest(rows)
    assert working[0] <= steepest <= working[-1], (steepest, working[0], working[-1])
    assert working[0] <= min_over_10 <= working[-1], (min_over_10, working[0], working[-1])


@pytest.mark.parametrize("losses", [[2.0, 1.8, 1.5, 1.2, 1.0, 0.9, 1.5, 3.0, 9.0, 30.0, 80.0, 1.0],   # diverges at 10
                                    [2.0, 1.9, 1.7, float("nan"), 1.0, 1.0, 1.0]])                   # NaN at 4
def test_losses_read_in_windows_give_the_step_by_step_rows(losses):
    """Reading the losses back every 5 steps stops at the same step with the same rows as reading each one."""
    def run(read_every):
        values = iter(losses)
        return range_test(lambda *batch: Tensor(np.float32(next(values))), lambda: [(None, None)],
                          ramp(1e-3, 1.0, len(losses)), diverge=4.0, read_every=read_every)

    step_by_step = run(1)
    assert 0 < len(step_by_step) < len(losses)
    assert run(5) == run(4) == step_by_step


def test_suggest_needs_a_descent_before_the_minimum():
    rows = [(i, lr, 1.0 + i, 1.0 + i) for i, lr in enumerate(ramp(1e-3, 1, 20), 1)]   # rises from the start
    steepest, min_over_10 = suggest(rows)
    assert steepest is None and min_over_10 == pytest.approx(1e-4)


def test_command_writes_table_and_figure_and_no_run_folder(tiny_aircraft, tmp_path):
    run_dir = tmp_path / "run"
    out = tmp_path / "run_lr_find"                                     # no --out: beside the run folder
    proc = run_script("tools/lr_find.py", "--data_dir", tiny_aircraft, *TINY_TRAIN_ARGS, "--mode", "1", "--model",
                      "resnet18", "--opt", "momentum", "--freeze_backbone", "True", "--num_steps", "30",
                      "--ckpt_save_dir", run_dir)
    assert proc.returncode == 0, proc.stderr
    assert "cache_features" in proc.stdout                             # a frozen backbone runs on cached features
    with open(out / "lr_find.csv") as f:
        rows = list(csv.DictReader(f))
    lrs = [float(r["lr"]) for r in rows]
    defaults = {key: default for key, default, *_ in EXTRA["lr_find.py"]}
    np.testing.assert_allclose(lrs, ramp(defaults["start_lr"], defaults["end_lr"], 30)[:len(rows)], rtol=1e-5)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("suggested lr: ")][0]
    value = float(line.split()[2])
    assert "rule:" in line and min(lrs) <= value <= max(lrs)
    assert_png(out / "lr_find.png", 600, 400)
    assert not os.path.exists(run_dir) and sorted(os.listdir(out)) == ["lr_find.csv", "lr_find.png"]
    assert sorted(os.listdir(tmp_path)) == ["run_lr_find"]


def test_a_frozen_backbone_with_the_balanced_sampler_trains_the_images(tiny_aircraft, tmp_path):
    """cache_features refuses the balanced sampler; the range test then trains on the images, not refused."""
    proc = run_main("tools/lr_find.py", "--data_dir", tiny_aircraft, *TINY_TRAIN_ARGS, "--mode", "1", "--model",
                    "resnet18", "--freeze_backbone", "True", "--sampler", "balanced", "--num_steps", "5",
                    "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert "cache_features" not in proc.stdout
    with open(tmp_path / "out" / "lr_find.csv") as f:
        assert len(list(csv.DictReader(f))) == 5


def test_refuses_a_run_folder_as_out(tmp_path):
    (tmp_path / "results.csv").write_text("epoch\n")
    (tmp_path / "m_best.ckpt").write_bytes(b"weights")
    proc = run_main("tools/lr_find.py", "--data_dir", "x", "--out", tmp_path)
    assert_one_line_error(proc, "holds a training run", code=2)
    assert (tmp_path / "m_best.ckpt").read_bytes() == b"weights" and sorted(os.listdir(tmp_path)) == [
        "m_best.ckpt", "results.csv"]


def test_an_out_that_cannot_be_written_is_refused_before_any_work(tmp_path):
    (tmp_path / "a_file").write_text("mine")
    proc = run_main("tools/lr_find.py", "--data_dir", "x", "--out", tmp_path / "a_file")
    assert_one_line_error(proc, "'out'", "is a file, not a folder", code=2)
    assert (tmp_path / "a_file").read_text() == "mine"
    proc = run_main("tools/lr_find.py", "--data_dir", "x", "--out", tmp_path / "a_file" / "sub")
    assert_one_line_error(proc, "is under a file", code=2)


def test_the_default_out_is_never_a_run_folder_nor_inside_one(tmp_path):
    run = tmp_path / "run_lr_find"                       # the default --out of --ckpt_save_dir run holds a run
    run.mkdir()
    (run / "summary.json").write_text("{}")
    proc = run_main("tools/lr_find.py", "--data_dir", "x", "--ckpt_save_dir", tmp_path / "run")
    assert_one_line_error(proc, "default, beside ckpt_save_dir", "holds a training run", code=2)
    assert sorted(os.listdir(run)) == ["summary.json"]
    for run_dir in (".", ".."):                         # no name to put "_lr_find" beside: --out is needed
        proc = run_main("tools/lr_find.py", "--data_dir", "x", "--ckpt_save_dir", run_dir)
        assert_one_line_error(proc, "names no folder", "set --out DIR", code=2)


@pytest.mark.parametrize("key,value,words", [("num_steps", "3", "num_steps must be at least 5, got 3"),
                                             ("smoothing", "1.5", "smoothing must be in [0, 1), got 1.5"),
                                             ("diverge", "0.5", "diverge must be above 1, got 0.5")])
def test_a_bad_range_test_setting_is_named_with_its_value(tmp_path, key, value, words):
    proc = run_main("tools/lr_find.py", "--data_dir", "x", "--out", tmp_path / "out", f"--{key}", value)
    assert_one_line_error(proc, words, code=2)
    assert not (tmp_path / "out").exists()
