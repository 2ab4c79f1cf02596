"""Exact resume for a model with dropout, mid-epoch recovery (``recovery_interval``), and why MindSpore's own
dropout cannot give either."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT, TINY_TRAIN_ARGS, run_script
from tools.core.config import parse_config
from tools.core.errors import UsageError
from tools.models.seeded_dropout import seed_dropouts

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn

MODEL = "mobilenet_v3_small_100"   # Dropout(p=0.2) in its head
# 5 steps per epoch, 2 epochs: the session's tiny run with recovery states, which change nothing of the training,
# so that run (shared with other modules) is the uninterrupted reference
RUN = [*TINY_TRAIN_ARGS, "--recovery_interval", "2"]


def checkpoint_arrays(path):
    return {k: v.asnumpy() for k, v in ms.load_checkpoint(str(path)).items() if hasattr(v, "asnumpy")}


def results_but_seconds(folder):
    return [line.rsplit(",", 1)[0] for line in open(os.path.join(folder, "results.csv")).read().splitlines()]


def kill_when(cmd, log, pattern):
    """Run ``cmd`` and SIGKILL it as soon as its output matches ``pattern``."""
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=dict(os.environ, GLOG_v="3"))
    while proc.poll() is None and not re.search(pattern, open(log).read()):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL, open(log).read()   # killed before it finished
    return open(log).read()


def test_killed_mid_epoch_resumes_at_the_recovery_step_and_ends_as_the_uninterrupted_run(tiny_aircraft, tiny_run,
                                                                                          tmp_path):
    reference, out = Path(tiny_run["out"]), tmp_path / "run"
    cmd = [sys.executable, os.path.join(ROOT, "finetune.py"), "--data_dir", tiny_aircraft, *RUN,
           "--ckpt_save_dir", str(out), "--resume", "auto"]
    # epoch 2 step 4 reported: the state after step 2 of epoch 2 was written (every 2 steps), step 4's was not
    kill_when(cmd, tmp_path / "killed.txt", r"epoch 2/2 step 4/5")
    resumed = run_script(*cmd[1:])
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at epoch 2 step 3" in resumed.stdout
    steps = re.findall(r"epoch (\d)/2 step (\d)/5", resumed.stdout)
    assert steps[0] == ("2", "3")                                     # at most recovery_interval steps redone
    assert results_but_seconds(out) == results_but_seconds(reference)
    for name in (f"{MODEL}_last.ckpt", "resume.ckpt"):
        got, want = checkpoint_arrays(out / name), checkpoint_arrays(reference / name)
        assert got.keys() == want.keys()
        for key in want:
            assert np.array_equal(got[key], want[key]), (name, key)   # bitwise, dropout masks included
    assert checkpoint_arrays(out / "resume.ckpt")["classifier.2.dropout_calls"] == 10   # one mask per step


def dropout_masks(cell, x, steps):
    cell.set_train()
    return [cell(x).asnumpy() != 0 for _ in range(steps)]


def test_mindspore_dropout_restarts_its_masks_in_a_new_process_seeded_dropout_continues():
    """What a resumed process sees: MindSpore's kernel keeps its generator inside, out of reach of any state
    file, so a new cell (a new process) with the same seed starts its masks afresh instead of drawing the ones
    the uninterrupted run draws next; the seeded one, given the saved counter, draws exactly those."""
    x = Tensor(np.ones((8, 1024), np.float32))
    ms.set_seed(5)
    native = dropout_masks(nn.Dropout(p=0.2), x, 4)
    ms.set_seed(5)
    restarted = dropout_masks(nn.Dropout(p=0.2), x, 2)
    assert not np.array_equal(restarted[0], native[2]) and not np.array_equal(restarted[1], native[3])

    def seeded():
        net = nn.SequentialCell([nn.Dropout(p=0.2)])
        assert seed_dropouts(net, 5) == 1
        return net

    uninterrupted = dropout_masks(seeded(), x, 4)
    resumed = seeded()
    resumed[0].dropout_calls.set_data(Tensor(2, ms.int64))            # what resume.ckpt carries after 2 steps
    assert all(np.array_equal(a, b) for a, b in zip(dropout_masks(resumed, x, 2), uninterrupted[2:]))
    keep = np.stack(uninterrupted)
    assert abs(keep.mean() - 0.8) < 0.01                              # p = 0.2
    assert not np.array_equal(keep[0], keep[1])                       # a new mask every step


def test_seeded_dropout_scales_like_mindspore_and_is_identity_in_eval():
    net = nn.SequentialCell([nn.Dropout(p=0.25)])
    seed_dropouts(net, 0)
    x = Tensor(np.random.default_rng(0).normal(size=(4, 300)).astype(np.float32))
    net.set_train()
    out = net(x).asnumpy()
    kept = out != 0
    assert 0.7 < kept.mean() < 0.8
    np.testing.assert_allclose(out[kept], x.asnumpy()[kept] / 0.75, rtol=1e-6)
    net[0].dropout_calls.set_data(Tensor(0, ms.int64))                # the same call again, differentiated
    np.testing.assert_allclose(ms.grad(net)(x).asnumpy(), kept / 0.75, rtol=1e-6)
    net.set_train(False)
    assert np.array_equal(net(x).asnumpy(), x.asnumpy())


def test_negative_recovery_interval_is_refused():
    with pytest.raises(UsageError, match="'recovery_interval' must be >= 0"):
        parse_config(["--recovery_interval", "-1"], "test")
