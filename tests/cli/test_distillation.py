"""Distillation through finetune.py: a run stopped after epoch 1 and resumed ends as the uninterrupted distilled run
(the resume state and checkpoints hold nothing of the teacher), summary.json names the teacher, alpha and T, the
dry-run plan names the teacher, validate.py takes the student's checkpoint as any; bad teachers are one line each."""
import json
import os
import re
import subprocess
import sys
from types import SimpleNamespace

from conftest import ROOT, TINY_TRAIN_ARGS, assert_one_line_error, free_port, make_tiny_aircraft, run_main, run_script
from tools.train.checkpoints import save_weights

import mindspore as ms
import numpy as np
import pytest
from mindcv.models import create_model

TEACHER = "mobilenet_v3_small_100"
CLASSES = ["T-shirt/top", "Trouser", "Sneaker", "Ankle boot", "Bag"]
# resnet18 student (no dropout) with a constant lr: a run cut short at epoch 1 is the first epoch of the 2-epoch run
ARGS = [*TINY_TRAIN_ARGS, "--batch_size", "16", "--mode", "1", "--model", "resnet18", "--opt", "momentum",
        "--scheduler", "constant", "--distill_alpha", "0.25", "--distill_temperature", "3"]
EPOCHS = 2


def weights(path):
    return {k: v.asnumpy() for k, v in ms.load_checkpoint(str(path)).items() if hasattr(v, "asnumpy")}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    data = make_tiny_aircraft(str(root / "data"))
    teacher = str(root / f"{TEACHER}_best.ckpt")
    ms.set_seed(7)
    net = create_model(TEACHER, num_classes=len(CLASSES))
    save_weights(net, teacher, CLASSES)
    del net
    return SimpleNamespace(root=root, data=data, teacher=teacher,
                           args=[*ARGS, "--data_dir", data, "--teacher_model", TEACHER, "--teacher_ckpt", teacher])


@pytest.fixture(scope="module")
def reference(setup):
    out = setup.root / "reference"
    proc = run_script("finetune.py", *setup.args, "--epoch_size", EPOCHS, "--ckpt_save_dir", out)
    assert proc.returncode == 0, proc.stderr
    return SimpleNamespace(out=out, stdout=proc.stdout)


def test_resumed_distilled_run_ends_as_the_uninterrupted_one(setup, reference):
    out = setup.root / "chain"
    for epochs in (1, 2):
        resume = ["--resume", str(out / "resume.ckpt")] if epochs > 1 else []
        proc = run_script("finetune.py", *setup.args, "--epoch_size", epochs, "--ckpt_save_dir", out, *resume)
        assert proc.returncode == 0, proc.stderr
        assert f"teacher: {TEACHER} from {setup.teacher}" in proc.stdout   # reloaded from teacher_ckpt on resume
    for name in ("resnet18_last.ckpt", "resnet18_best.ckpt", "resume.ckpt"):
        got, want = weights(out / name), weights(reference.out / name)
        assert not [k for k in want if k.startswith("teacher.") or k.startswith("features.")], name  # no teacher
        keys = [k for k in want if not k.startswith("learning_rate")]   # the schedule's length follows epoch_size
        assert sorted(keys) == sorted(k for k in got if not k.startswith("learning_rate"))
        for key in keys:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-5, err_msg=f"{name}: {key}")

    def table(folder):
        return [row.split()[:-1] for row in open(folder / "results.txt").read().splitlines()]

    assert table(out) == table(reference.out)


def test_summary_names_the_teacher_and_validate_takes_the_student(setup, reference):
    with open(reference.out / "summary.json", encoding="utf-8") as f:
        summary = json.load(f)
    assert summary["teacher"] == {"model": TEACHER, "checkpoint": setup.teacher, "cached": False}
    assert (summary["distill_alpha"], summary["distill_temperature"]) == (0.25, 3.0)
    proc = run_main("validate.py", "--config", reference.out / "config.yaml", "--ckpt_path",
                    reference.out / "resnet18_best.ckpt", "--out", setup.root / "metrics.json")
    assert proc.returncode == 0, proc.stderr
    with open(setup.root / "metrics.json", encoding="utf-8") as f:
        assert json.load(f)["top1"] == pytest.approx(summary["best_top1"], abs=1e-6)


def test_dry_run_plan_names_the_teacher(setup, tmp_path):
    proc = run_main("finetune.py", *setup.args, "--dry_run", "True", "--ckpt_save_dir", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    assert (f"distillation: teacher {TEACHER} from {setup.teacher}, in inference mode on each training batch; "
            "loss 0.25 x ce + 0.75 x T^2 KL at T 3") in proc.stdout
    assert not os.path.exists(tmp_path / "o")


def test_a_run_folder_teaches_with_its_best_checkpoint_and_must_be_of_teacher_model(setup, reference, tmp_path):
    proc = run_main("finetune.py", *setup.args, "--teacher_model", "resnet18", "--teacher_ckpt", reference.out,
                    "--dry_run", "True", "--ckpt_save_dir", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    assert f"distillation: teacher resnet18 from {reference.out / 'resnet18_best.ckpt'}," in proc.stdout
    proc = run_main("finetune.py", *setup.args, "--teacher_ckpt", reference.out, "--ckpt_save_dir", tmp_path / "o")
    assert_one_line_error(proc, f"the run in {reference.out} trained resnet18, teacher_model is {TEACHER}", code=2)


def test_a_teacher_of_other_classes_is_one_line(setup, tmp_path):
    other = str(tmp_path / "other.ckpt")
    net = create_model(TEACHER, num_classes=len(CLASSES))
    save_weights(net, other, [*CLASSES[1:], CLASSES[0]])
    del net
    proc = run_main("finetune.py", *setup.args, "--teacher_ckpt", other, "--ckpt_save_dir", tmp_path / "o")
    assert_one_line_error(proc, "teacher_ckpt", other, "other classes", "class 0 is 'Trouser' there", code=1)
    assert not os.path.exists(tmp_path / "o")


def test_a_missing_teacher_checkpoint_is_one_line(setup, tmp_path):
    proc = run_main("finetune.py", *setup.args, "--teacher_ckpt", tmp_path / "nope.ckpt", "--ckpt_save_dir",
                    tmp_path / "o")
    assert_one_line_error(proc, "teacher_ckpt: checkpoint not found", "nope.ckpt", code=1)


def test_a_run_folder_without_its_best_checkpoint_is_one_line(setup, tmp_path):
    proc = run_main("finetune.py", *setup.args, "--teacher_ckpt", tmp_path, "--ckpt_save_dir", tmp_path / "o")
    assert_one_line_error(proc, "teacher_ckpt", f"holds no {TEACHER}_best.ckpt", code=1)


def test_a_checkpoint_that_is_not_teacher_model_is_one_line(setup, tmp_path):
    other = str(tmp_path / "resnet.ckpt")
    net = create_model("resnet18", num_classes=len(CLASSES))
    save_weights(net, other, CLASSES)
    del net
    proc = run_main("finetune.py", *setup.args, "--teacher_ckpt", other, "--ckpt_save_dir", tmp_path / "o")
    assert_one_line_error(proc, "teacher_ckpt", other, "another architecture", code=1)


@pytest.mark.parametrize("flags, needle", [
    (["--cache_teacher", "True", "--hflip", "0.5"], "'cache_teacher: True' needs fixed training views"),
    (["--distill_alpha", "-0.1"], "'distill_alpha' must be in [0, 1], got -0.1"),
])
def test_refused_settings_are_one_line_exit_2(setup, tmp_path, flags, needle):
    proc = run_main("finetune.py", *setup.args, *flags, "--ckpt_save_dir", tmp_path / "o")
    assert_one_line_error(proc, needle, code=2)


def test_msrun_ranks_distil_their_shards_from_cached_logits(setup, tmp_path):
    """Two workers, each with its own shard and the whole split's cached logits (an epoch's shuffle deals each
    rank other images), end with identical weights."""
    log_dir = tmp_path / "logs"
    env = dict(os.environ, GLOG_v="3", PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    cmd = ["msrun", "--worker_num=2", "--local_worker_num=2", f"--master_port={free_port()}", f"--log_dir={log_dir}",
           "--join=True", os.path.join(ROOT, "finetune.py"),
           *setup.args, "--distribute", "True", "--epoch_size", "1", "--batch_size", "8", "--cache_teacher", "True",
           "--scale", "1", "1", "--ratio", "1", "1", "--hflip", "0", "--ckpt_save_dir", str(tmp_path / "out")]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    logs = [open(log_dir / f"worker_{r}.log").read() for r in (0, 1)]
    assert proc.returncode == 0, logs
    digests = [re.search(r"rank (\d): final weights digest (\w+)", log).groups() for log in logs]
    assert {d[0] for d in digests} == {"0", "1"} and digests[0][1] == digests[1][1]
    for log in logs:
        assert "cache_teacher: 40 training views through the teacher once" in log
    assert "2 steps/epoch" in logs[0]   # 40 images, 2 workers, batches of 8: each rank steps through its 20
