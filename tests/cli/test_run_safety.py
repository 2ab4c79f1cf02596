"""Honest exits and safe outputs: Ctrl-C and SIGTERM in GRAPH mode, damaged checkpoints, unwritable outputs,
a full disk, one run per folder, msrun without distribute."""
import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import predict
import validate
from conftest import ROOT, TINY_TRAIN_ARGS, assert_one_line_error, run_script
from tools.core.errors import DataError, UsageError
from tools.core.fileio import check_output_file, check_writable_dir
from tools.models.factory import read_checkpoint
from tools.train import run_folder
from tools.train.checkpoints import save_weights
from tools.train.trainer import Trainer

import mindspore as ms
import numpy as np
import pytest
from mindcv.models import create_model

FAST = [*TINY_TRAIN_ARGS, "--mode", "1", "--model", "resnet18", "--opt", "momentum", "--epoch_size", "1"]
READ_ONLY = "/sys/suite_test_run"  # sysfs refuses new files, even to root


def flip_tensor_bytes(path, tensor):
    """Flip 4 bytes in the middle of ``tensor``'s data inside the checkpoint file ``path``."""
    data = bytearray(open(path, "rb").read())
    raw = tensor.astype(np.float32).tobytes()
    start = bytes(data).find(raw[:64])
    assert start > 0, "tensor bytes not found in the file"
    middle = start + len(raw) // 2
    data[middle:middle + 4] = bytes(b ^ 0xFF for b in data[middle:middle + 4])
    open(path, "wb").write(data)


def test_a_damaged_checkpoint_is_refused_and_mindcv_ones_without_crc_still_load(tmp_path, tiny_aircraft):
    net = create_model("resnet18", num_classes=5)
    suite, mindcv = str(tmp_path / "suite.ckpt"), str(tmp_path / "mindcv.ckpt")
    save_weights(net, suite, ["a", "b", "c", "d", "e"])
    ms.save_checkpoint(net, mindcv)                                     # as MindCV writes them: no CRC
    weight = net.classifier.weight.asnumpy()
    np.testing.assert_array_equal(read_checkpoint(mindcv)["classifier.weight"].asnumpy(), weight)
    np.testing.assert_array_equal(read_checkpoint(suite)["classifier.weight"].asnumpy(), weight)
    flip_tensor_bytes(suite, net.conv1.weight.asnumpy())
    assert ms.load_checkpoint(suite)["conv1.weight"].asnumpy().tobytes() != net.conv1.weight.asnumpy().tobytes()
    with pytest.raises(DataError, match=r"suite.ckpt is damaged \(its CRC checksum"):  # was: loads silently
        read_checkpoint(suite)
    proc = run_script("validate.py", "--data_dir", tiny_aircraft, *FAST, "--ckpt_path", suite, "--split", "test")
    assert_one_line_error(proc, "suite.ckpt is damaged", code=1)        # MindSpore's own log line is silenced


def test_resume_auto_falls_back_when_the_newest_state_has_flipped_bytes(tmp_path, capsys):
    net = ms.nn.Dense(300, 20)
    trainer = Trainer(SimpleNamespace(ckpt_save_dir=str(tmp_path), model="dense", seed=1, loss_scale_type="fixed"),
                      net, net, [0.1], ["a"])
    trainer.save_state(1)
    first = net.weight.asnumpy().copy()
    net.weight.set_data(net.weight + 1)
    trainer.save_state(2)
    flip_tensor_bytes(trainer.saver.state_path, net.weight.asnumpy())
    fresh = ms.nn.Dense(300, 20)
    again = Trainer(SimpleNamespace(ckpt_save_dir=str(tmp_path), model="dense", seed=1, loss_scale_type="fixed"),
                    fresh, fresh, [0.1], ["a"])
    assert again.resume("auto") == 2                                    # epoch 1's state: go on at 2
    np.testing.assert_array_equal(fresh.weight.asnumpy(), first)
    warning = capsys.readouterr().err.strip()
    assert "resume.ckpt is damaged" in warning and "trying the previous state" in warning and "\n" not in warning


def test_a_full_disk_is_one_line_and_keeps_the_last_good_state(tmp_path, monkeypatch):
    net = ms.nn.Dense(30, 20)
    trainer = Trainer(SimpleNamespace(ckpt_save_dir=str(tmp_path), model="dense", seed=1, loss_scale_type="fixed"),
                      net, net, [0.1], ["a"])
    trainer.save_state(1)
    save_weights(net, str(tmp_path / "w.ckpt"), ["a"])
    before = {name: open(tmp_path / name, "rb").read() for name in os.listdir(tmp_path)}
    real_save = ms.save_checkpoint

    def disk_full(cell, path, **kwargs):   # MindSpore writes part of the file (its own .tmp), then the disk is full
        real_save(cell, path, **kwargs)
        with open(os.path.splitext(path)[0] + ".tmp", "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ms, "save_checkpoint", disk_full)
    net.weight.set_data(net.weight + 1)
    for write in (lambda: trainer.save_state(2), lambda: save_weights(net, str(tmp_path / "w.ckpt"), ["a"])):
        with pytest.raises(DataError) as err:
            write()
        assert "No space left on device" in str(err.value) and "\n" not in str(err.value)
    assert {name: open(tmp_path / name, "rb").read() for name in os.listdir(tmp_path)} == before  # no temp files
    monkeypatch.undo()
    assert Trainer(trainer.cfg, net, net, [0.1], ["a"]).resume("auto") == 2


def test_output_checks_refuse_unwritable_places_and_create_nothing(tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    for bad, needle in (("", "is empty"), (str(a_file), "is a file"), (str(a_file / "run"), "is under a file"),
                        (READ_ONLY + "/run", "cannot be written")):
        with pytest.raises(UsageError, match=needle):
            check_writable_dir(bad, "ckpt_save_dir")
    with pytest.raises(UsageError, match="is a folder"):
        check_output_file(str(tmp_path), "out")
    check_writable_dir(str(tmp_path / "new" / "deeper"), "ckpt_save_dir")
    check_output_file(str(tmp_path / "new" / "out.csv"), "out")
    assert sorted(os.listdir(tmp_path)) == ["file.txt"]                 # a check writes nothing


def test_each_script_refuses_a_bad_output_before_the_work(tmp_path, tiny_aircraft):
    ckpt = str(tmp_path / "w.ckpt")
    save_weights(create_model("resnet18", num_classes=5), ckpt, ["T-shirt/top", "Trouser", "Sneaker", "Ankle boot",
                                                                    "Bag"])
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    common = ["--data_dir", tiny_aircraft, *FAST, "--ckpt_path", ckpt]
    for script, args, needle in (("finetune.py", ["--ckpt_save_dir", a_file / "run"], "is under a file"),
                                 ("export.py", ["--out", READ_ONLY + "/model"], "cannot be written")):
        proc = run_script(script, *common, *args)
        assert_one_line_error(proc, needle, code=2)
        assert "steps/epoch" not in proc.stdout and "exported" not in proc.stdout
    for main, args, needle in ((predict.main, ["--out_dir", a_file], "'out_dir'"),   # in-process: the check comes
                               (predict.main, ["--out", tmp_path], "is a folder"),   # before any MindSpore set-up
                               (validate.main, ["--report_dir", a_file], "'report_dir'")):
        with pytest.raises(UsageError, match=needle):
            main([*map(str, common), *map(str, args)])
    assert sorted(os.listdir(tmp_path)) == ["file.txt", "w.ckpt"]


def test_msrun_without_distribute_is_refused(tiny_aircraft, tmp_path):
    env = dict(os.environ, GLOG_v="3", MS_WORKER_NUM="3", MS_SCHED_HOST="127.0.0.1", MS_SCHED_PORT="8118")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "finetune.py"), "--data_dir", tiny_aircraft, *FAST,
                           "--ckpt_save_dir", tmp_path / "run"], env=env, capture_output=True, text=True, timeout=300)
    assert_one_line_error(proc, "3 workers", "distribute is False", code=2)
    assert not os.path.exists(tmp_path / "run")


LOCK_HOLDER = """
import sys, time
sys.path.insert(0, {root!r})  # the repository root (a subprocess: pytest.ini does not apply)
from tools.train import run_folder
assert run_folder.lock({folder!r}, fresh=True)
print("locked", flush=True)
time.sleep(600)
"""


def test_a_folder_in_use_is_not_taken_and_a_dead_runs_lock_is_free(tmp_path, capsys):
    base = str(tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER.format(root=ROOT, folder=base)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert run_folder.status(base) == "running" and run_folder.holder(base)[0] == holder.pid
        cfg = SimpleNamespace(ckpt_save_dir=base, resume="auto", overwrite=False)
        assert run_folder.take(cfg) == base + "_2"                       # a running run is neither resumed nor shared
        assert f"{base} is in use by a running run (pid {holder.pid})" in capsys.readouterr().out
        with pytest.raises(DataError, match="in use by a running run"):
            run_folder.take(SimpleNamespace(ckpt_save_dir=base, resume="", overwrite=True))
        open(os.path.join(base, "resume.ckpt"), "wb").close()
        with pytest.raises(DataError, match="in use by a running run"):              # nor when named
            run_folder.take(SimpleNamespace(ckpt_save_dir=base, resume=os.path.join(base, "resume.ckpt"),
                                            overwrite=False))
        os.remove(os.path.join(base, "resume.ckpt"))
    finally:
        holder.kill()
        holder.wait()
    run_folder.release(base + "_2")
    shutil.rmtree(base + "_2")
    assert run_folder.status(base) == "interrupted"                    # the holder died: its lock is stale, free
    cfg = SimpleNamespace(ckpt_save_dir=base, resume="auto", overwrite=False)
    assert run_folder.take(cfg) == base and cfg.resume == "auto"        # ... and resume: auto continues it
    run_folder.release(base)


TAKE_AND_END = """
import os, sys, types
sys.path.insert(0, {root!r})
from tools.train import run_folder
for folder, writes in (({empty!r}, False), ({used!r}, True)):
    assert run_folder.take(types.SimpleNamespace(ckpt_save_dir=folder, resume="", overwrite=False)) == folder
    assert os.listdir(folder) == [".run.lock"]
    if writes:
        open(os.path.join(folder, "results.csv"), "w").close()
print("taken", flush=True)
"""


def test_a_run_that_ends_before_writing_anything_leaves_no_folder(tmp_path):
    empty, used = str(tmp_path / "empty"), str(tmp_path / "used")
    code = TAKE_AND_END.format(root=ROOT, empty=empty, used=used)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "taken", proc.stderr
    assert not os.path.exists(empty)                                    # the next run takes the same folder
    assert sorted(os.listdir(used)) == [".run.lock", "results.csv"] and run_folder.status(used) == "interrupted"


REMOVED_WHILE_RUNNING = """
import shutil, sys, types
sys.path.insert(0, {root!r})
from tools.train import run_folder
run_folder.take(types.SimpleNamespace(ckpt_save_dir={folder!r}, resume="", overwrite=False))
shutil.rmtree({folder!r})                # the user deletes the run folder while the run goes on
"""


def test_a_run_folder_removed_while_running_ends_without_a_traceback(tmp_path):
    code = REMOVED_WHILE_RUNNING.format(root=ROOT,
                                        folder=str(tmp_path / "run"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "run").exists()


def start(cmd, log):
    with open(log, "w") as f:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=dict(os.environ, GLOG_v="3"))


def test_two_runs_started_together_get_a_folder_each(tiny_aircraft, tmp_path):
    base = tmp_path / "run"
    procs = [start([sys.executable, os.path.join(ROOT, "finetune.py"), "--data_dir", tiny_aircraft, *FAST,
                    "--seed", str(seed), "--ckpt_save_dir", base], tmp_path / f"log{seed}.txt") for seed in (1, 2)]
    assert [p.wait(timeout=600) for p in procs] == [0, 0]
    folders = {}
    for seed in (1, 2):
        log = open(tmp_path / f"log{seed}.txt").read()
        folders[seed] = log.split("outputs in ")[1].split()[0]
    assert sorted(folders.values()) == [str(base), f"{base}_2"]
    for seed, folder in folders.items():                                # config and results of the same run
        assert f"seed: {seed}\n" in open(os.path.join(folder, "config.yaml")).read()
        assert run_folder.status(folder) == "finished"


def test_sigint_and_sigterm_in_graph_mode_stop_with_130_and_143_and_the_resume_command(tiny_aircraft, tmp_path):
    """Real signals to GRAPH-mode runs (MindSpore turns SIGINT into SIGTERM while a step runs; a plain
    SIGTERM used to end the run with no message)."""
    runs = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        out, log = tmp_path / signum.name, tmp_path / f"{signum.name}.txt"
        cmd = [sys.executable, os.path.join(ROOT, "finetune.py"), "--data_dir", tiny_aircraft, *TINY_TRAIN_ARGS,
               "--mode", "0", "--model", "resnet18", "--opt", "momentum", "--epoch_size", "3",
               "--ckpt_save_dir", out]
        runs[signum] = (start(cmd, log), out, log)
    waiting = dict(runs)
    while waiting:
        for signum, (proc, out, log) in list(waiting.items()):
            assert proc.poll() is None, open(log).read()
            if "epoch 2/3 step 2/" in open(log).read():                 # a step after epoch 1's state
                proc.send_signal(signum)
                del waiting[signum]
        time.sleep(0.05)
    for signum, (proc, out, log) in runs.items():
        code, text = proc.wait(timeout=300), open(log).read()
        assert code == 128 + signum, (signum, code, text)
        assert "Traceback" not in text, text
        hint = [line for line in text.splitlines() if "continue with python" in line]
        assert len(hint) == 1 and f"--resume auto --ckpt_save_dir {out}" in hint[0], text
        assert ("stopped by SIGTERM" in hint[0]) == (signum == signal.SIGTERM)
        assert "resume.ckpt" in os.listdir(out) and not any(".tmp" in name for name in os.listdir(out))
        assert run_folder.status(str(out)) == "interrupted"
