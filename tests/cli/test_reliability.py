"""Interrupted runs lose nothing; previous outputs are never clobbered; a NaN loss stops the run cleanly."""
import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

from conftest import ROOT, TINY_TRAIN_ARGS, assert_one_line_error, run_script
from tools.core.config import save_config
from tools.core.errors import DataError
from tools.report.evaluation import plot_training_curves
from tools.train import run_folder
from tools.train.checkpoints import save_weights, write_json, write_results
from tools.train.trainer import Trainer

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

FAST = [*TINY_TRAIN_ARGS, "--mode", "1", "--model", "resnet18", "--opt", "momentum"]  # the quickest to start
# resnet18 has no dropout (MindSpore's dropout keeps its random state inside the kernel), so a resumed run
# repeats the uninterrupted one exactly
REFERENCE = [*FAST, "--epoch_size", "3"]
STEPS = 5  # 40 tiny training images, batch 8


@pytest.fixture(scope="module")
def reference(tiny_aircraft, tmp_path_factory):
    """The folder of an uninterrupted run with ``REFERENCE`` (read-only by convention)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    proc = run_script("finetune.py", "--data_dir", tiny_aircraft, *REFERENCE, "--ckpt_save_dir", out)
    assert proc.returncode == 0, proc.stderr
    return out


def digests(folder):
    return {name: hashlib.sha1(open(os.path.join(folder, name), "rb").read()).hexdigest()
            for name in sorted(os.listdir(folder))}


def copy_files(source, target, *names):
    os.makedirs(target)
    for name in names:
        shutil.copy(source / name, target / name)


def weights(path):
    return {k: v.asnumpy() for k, v in ms.load_checkpoint(str(path)).items() if hasattr(v, "asnumpy")}


def assert_same_run(folder, reference):
    """Same files, the same weights and optimizer state, the same results table but for the seconds column."""
    assert sorted(os.listdir(folder)) == sorted(os.listdir(reference))   # no temporary file left behind
    for name in ("resnet18_last.ckpt", "resnet18_best.ckpt", "resume.ckpt"):
        got, want = weights(folder / name), weights(reference / name)
        assert got.keys() == want.keys()
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-5, err_msg=f"{name}: {key}")

    def table(path):
        return [row.split()[:-1] for row in open(path / "results.txt").read().splitlines()]

    assert table(folder) == table(reference)


def writing(folder):
    """The files that have a write in progress (or one cut short) in ``folder``: ``x.tmp...`` is ``x``."""
    try:
        return {name.split(".tmp")[0] for name in os.listdir(folder) if ".tmp" in name}
    except FileNotFoundError:
        return set()


def progress(log):
    """The last training step a run's output reports, counted over all epochs (epoch 2 step 1 is step 6)."""
    return max(((int(e) - 1) * STEPS + int(s) for e, s in re.findall(r"epoch (\d+)/\d+ step (\d+)/", log)), default=0)


def run_and_interrupt(cmd, out, log, signum, at_step, at_write, delay):
    """Run ``cmd``; once it reports training step ``at_step``, wait for its ``at_write``-th file write to be
    in progress (0: none) and ``delay`` seconds, then send it ``signum``. Returns the exit code and output."""
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=dict(os.environ, GLOG_v="3"))
    busy, writes, reached = writing(out), 0, False   # leftovers of an earlier interruption are not its writes
    while proc.poll() is None:
        now = writing(out)
        if reached:
            writes += len(now - busy)
        busy = now
        reached = reached or progress(open(log).read()) >= at_step
        if reached and writes >= at_write:
            time.sleep(delay)
            proc.send_signal(signum)
            break
        time.sleep(0.002)
    return proc.wait(timeout=300), open(log).read()


def test_killed_and_resumed_again_and_again_ends_like_the_uninterrupted_run(tiny_aircraft, reference, tmp_path):
    """SIGKILL mid-training, Ctrl-C, and SIGKILL while the last epoch's checkpoints are being written, at
    seeded-random moments; each time the same command with ``--resume auto`` carries on. Set KILL_SEED to try
    other moments."""
    rng = random.Random(int(os.environ.get("KILL_SEED", "7")))
    last = 3 * STEPS
    kill_at = rng.randint(1, 2 * STEPS - 1)
    plan = [(signal.SIGKILL, kill_at, 0, rng.uniform(0, 0.7)),
            (signal.SIGINT, rng.randint(kill_at + 1, last - 1), 0, rng.uniform(0, 0.7)),
            (signal.SIGKILL, last, rng.randint(1, 3), 0)]
    out = tmp_path / "run"
    cmd = [sys.executable, os.path.join(ROOT, "finetune.py"), "--data_dir", tiny_aircraft, *REFERENCE,
           "--ckpt_save_dir", str(out), "--resume", "auto"]
    for i, (signum, *when) in enumerate(plan):
        code, log = run_and_interrupt(cmd, out, tmp_path / f"log{i}.txt", signum, *when)
        assert "Traceback" not in log, log
        assert "resuming at epoch" in log or "starting a new run" in log, log   # before any state: from scratch
        if signum == signal.SIGINT:
            assert code == 130 and "--resume auto" in log, (plan[i], log)
        else:
            assert code == -signal.SIGKILL, (plan[i], log)                     # killed before it finished
    final = run_script(*cmd[1:])
    assert final.returncode == 0 and "Traceback" not in final.stderr, final.stderr
    assert_same_run(out, reference)


def test_nan_loss_stops_naming_epoch_and_step_and_keeps_the_best_checkpoint(tiny_aircraft, reference, tmp_path):
    out = tmp_path / "run"
    copy_files(reference, out, "resume.ckpt", "resnet18_best.ckpt", "resnet18_last.ckpt", "results.csv")
    before = digests(out)
    proc = run_script("finetune.py", "--data_dir", tiny_aircraft, *REFERENCE, "--ckpt_save_dir", out,
                      "--resume", out / "resume.ckpt", "--epoch_size", "4", "--lr", "1e30")  # resume takes the new lr
    line = assert_one_line_error(proc, "at epoch 4 step", "best checkpoint", code=1)
    assert "loss is nan" in line or "loss is inf" in line, line
    after = digests(out)
    assert {name: after[name] for name in before} == before           # best, last, state and results intact
    assert "resnet18-4.ckpt" not in after


def test_second_run_does_not_clobber_the_first(tiny_aircraft, reference):
    before = digests(reference)
    proc = run_script("finetune.py", "--data_dir", tiny_aircraft, *FAST, "--epoch_size", "1",
                      "--ckpt_save_dir", reference)
    assert proc.returncode == 0, proc.stderr
    assert f"writing to {reference}_2" in proc.stdout
    assert digests(reference) == before                              # the first run's files, byte for byte
    assert os.path.isfile(f"{reference}_2/results.csv")
    assert [run_folder.status(f) for f in (str(reference), f"{reference}_2")] == ["finished", "finished"]


def test_resume_auto_continues_the_redirected_run_and_leaves_the_finished_one_alone(tiny_aircraft, reference,
                                                                                   tmp_path):
    """``<dir>`` holds a finished run; the same command with ``--resume auto`` goes to ``<dir>_2`` and is killed
    there; once more it continues ``<dir>_2`` (it used to extend the finished run in ``<dir>``)."""
    base = tmp_path / "run"
    shutil.copytree(reference, base)
    before = digests(base)
    cmd = [sys.executable, os.path.join(ROOT, "finetune.py"), "--data_dir", tiny_aircraft, *REFERENCE,
           "--ckpt_save_dir", str(base), "--resume", "auto"]
    code, log = run_and_interrupt(cmd, tmp_path / "run_2", tmp_path / "log.txt", signal.SIGKILL, STEPS + 2, 0, 0)
    assert code == -signal.SIGKILL and "finished ones are left alone" in log and f"writing to {base}_2" in log, log
    again = run_script(*cmd[1:])
    assert again.returncode == 0, again.stderr
    assert f"resume: auto continues the interrupted run in {base}_2" in again.stdout
    assert "resuming at epoch 2" in again.stdout
    assert digests(base) == before                                   # the finished run, byte for byte
    assert_same_run(tmp_path / "run_2", reference)
    assert run_folder.status(f"{base}_2") == "finished"


class Crash(BaseException):
    """The process dying at that point."""


def crash(*args):
    raise Crash()


def tiny_trainer(folder):
    net = nn.Dense(3, 2)
    return Trainer(SimpleNamespace(ckpt_save_dir=str(folder), model="dense", seed=1, loss_scale_type="fixed"),
                   net, net, [0.1], ["a", "b"])


def test_a_crash_mid_write_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    """Every writer goes through a temporary file and a rename: with no rename ever done (a run dying just
    before each), no final file changes."""
    trainer = tiny_trainer(tmp_path)
    net, cfg, rows = trainer.network, trainer.cfg, [{"epoch": 1, "train_loss": 1.0, "lr": 0.1}]
    writers = [lambda: save_weights(net, str(tmp_path / "w.ckpt"), ["a", "b"]),
               lambda: write_results(str(tmp_path), rows), lambda: write_json(str(tmp_path / "m.json"), rows),
               lambda: save_config(cfg, str(tmp_path / "config.yaml")),
               lambda: plot_training_curves(rows, str(tmp_path / "curves.png")), lambda: trainer.save_state(1)]
    for write in writers:
        write()
    before = digests(tmp_path)
    net.weight.set_data(net.weight + 1)
    rows[0]["train_loss"], cfg.seed = 2.0, 2
    monkeypatch.setattr(os, "replace", lambda src, dst: None)
    for write in writers:
        write()
    after = digests(tmp_path)
    assert {name: after[name] for name in before} == before


def test_resume_auto_takes_the_previous_state_when_the_newest_is_missing_or_damaged(tmp_path, monkeypatch, capsys):
    trainer = tiny_trainer(tmp_path)
    trainer.save_state(1)
    trainer.save_state(2)
    real_replace = os.replace
    with monkeypatch.context() as patch:             # die between "resume -> resume_prev" and "new -> resume"
        patch.setattr(os, "replace",
                      lambda src, dst: crash() if dst == trainer.saver.state_path else real_replace(src, dst))
        with pytest.raises(Crash):
            trainer.save_state(3)
    assert not os.path.exists(trainer.saver.state_path)
    assert tiny_trainer(tmp_path).resume("auto") == 3                # epoch 2's state: go on at 3
    trainer.save_state(3)
    with open(trainer.saver.state_path, "r+b") as f:
        f.truncate(100)
    assert tiny_trainer(tmp_path).resume("auto") == 3
    warning = capsys.readouterr().err.strip()
    assert "resume.ckpt" in warning and "trying the previous state" in warning and "\n" not in warning
    with pytest.raises(DataError, match="cannot read checkpoint .*resume.ckpt"):
        tiny_trainer(tmp_path).resume(trainer.saver.state_path)
