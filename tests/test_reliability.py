"""Interrupted runs lose nothing; previous outputs are never clobbered."""
import os
import signal
import subprocess
import sys

from conftest import ROOT, TINY_TRAIN_ARGS, run_script

FAST = [*TINY_TRAIN_ARGS, "--mode", "1", "--model", "resnet18"]  # resnet18 starts fastest


def snapshot(folder):
    return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}


def test_second_run_does_not_clobber_the_first(tiny_aircraft, tmp_path):
    out = tmp_path / "run"
    assert run_script("finetune.py", "--data_dir", tiny_aircraft, *FAST, "--epoch_size", "1",
                      "--ckpt_save_dir", out).returncode == 0
    before = snapshot(out)
    proc = run_script("finetune.py", "--data_dir", tiny_aircraft, *FAST, "--epoch_size", "1", "--ckpt_save_dir", out)
    assert proc.returncode == 0, proc.stderr
    assert f"writing to {out}_2" in proc.stdout
    assert snapshot(out) == before                                   # the first run's files, byte for byte
    assert os.path.isfile(f"{out}_2/results.csv")
    proc = run_script("finetune.py", "--data_dir", tiny_aircraft, *FAST, "--epoch_size", "1", "--ckpt_save_dir", out,
                      "--overwrite", "True")
    assert proc.returncode == 0 and "writing to" not in proc.stdout


def test_damaged_resume_state_falls_back_to_the_previous_one(tiny_aircraft, tmp_path):
    out = tmp_path / "run"
    assert run_script("finetune.py", "--data_dir", tiny_aircraft, *FAST, "--epoch_size", "2",
                      "--ckpt_save_dir", out).returncode == 0
    with open(out / "resume.ckpt", "r+b") as f:                      # truncate the newest state
        f.truncate(1000)
    proc = run_script("finetune.py", "--data_dir", tiny_aircraft, *FAST, "--epoch_size", "2", "--ckpt_save_dir", out,
                      "--resume", "auto")
    assert proc.returncode == 0, proc.stderr
    assert "resume.ckpt" in proc.stderr and "trying the previous state" in proc.stderr
    assert "resuming at epoch 2" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_ctrl_c_exits_130_with_a_resumable_state(tiny_aircraft, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, os.path.join(ROOT, "finetune.py"), "--data_dir", tiny_aircraft, *FAST, "--epoch_size", "5",
           "--ckpt_save_dir", str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, GLOG_v="3"))
    for line in proc.stdout:
        if line.startswith("epoch 1/5  train_loss"):
            proc.send_signal(signal.SIGINT)
            break
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "--resume auto" in err
    resumed = run_script("finetune.py", "--data_dir", tiny_aircraft, *FAST, "--epoch_size", "5", "--ckpt_save_dir",
                         out, "--resume", "auto")
    assert resumed.returncode == 0 and "resuming at epoch 2" in resumed.stdout
