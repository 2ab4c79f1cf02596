"""A refused command touches nothing: every check of ``finetune.py`` (the resume state against the config, the
data, the values) comes before its first write; a finished run stays finished; a stop signal before
training leaves nothing behind."""
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, TINY_CLASSES, TINY_TRAIN_ARGS, assert_one_line_error, make_tiny_aircraft, run_main, \
    run_script
from tools import run_folder


def folder_hash(folder):
    """One digest of every file under ``folder``: its relative name and its bytes."""
    digest = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(folder)):
        dirs.sort()
        digest.update(os.path.relpath(root, folder).encode() + b"/\0")
        for name in sorted(files):
            digest.update(name.encode() + b"\0")
            with open(os.path.join(root, name), "rb") as f:
                digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()


@pytest.fixture
def finished(tiny_run, tmp_path):
    """A copy of the session's finished tiny run (its state, checkpoints, summary.json, lock file)."""
    out = str(tmp_path / "run")
    shutil.copytree(tiny_run["out"], out)
    assert run_folder.status(out) == "finished"
    return out


def class_folders(root, classes=TINY_CLASSES[:4], per_class=6):
    """A folder of class folders (no split) cut from the tiny Aircraft-layout data."""
    data = make_tiny_aircraft(str(root / "aircraft"), classes=classes, per_class={"trainval": per_class})
    with open(os.path.join(data, "images_variant_trainval.txt"), encoding="utf-8") as f:
        for line in f:
            image_id, label = line.rstrip("\n").split(" ", 1)
            folder = root / "folders" / label.replace("/", "_")
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy(os.path.join(data, "images", image_id + ".jpg"), folder)
    return str(root / "folders")


REFUSALS = {  # kind -> (extra flags, a part of the one error line, exit code); {data4}/{folders}: other data
    "another model": (["--model", "resnet18"], "resume with the run's own config", 1),
    "other data": (["--data_dir", "{data4}"], "has shape", 1),
    "other data, val_fraction": (["--data_dir", "{folders}", "--val_fraction", "0.25", "--dataset_format", "auto"],
                                 "has shape", 1),
    "another optimizer": (["--opt", "momentum"], "resume with the run's own config", 1),
    "other frozen layers": (["--freeze_layers", "3"], "other frozen layers", 1),
    "a bad value (no full batch)": (["--batch_size", "64"], "make no full batch", 2),
    "a bad value (num_classes)": (["--num_classes", "7"], "num_classes", 2),
    "a bad value (parse)": (["--lr", "-1"], "'lr' must be >= 0", 2),
    "not a resume state": (["--resume", "{run}/mobilenet_v3_small_100_last.ckpt"], "is not a resume checkpoint", 1),
}


@pytest.mark.parametrize("kind", REFUSALS)
def test_a_refused_resume_leaves_the_finished_run_byte_identical(kind, finished, tiny_aircraft, tmp_path):
    flags, needle, code = REFUSALS[kind]
    places = {"run": finished, "data4": make_tiny_aircraft(str(tmp_path / "data4"), classes=TINY_CLASSES[:4])
              if "{data4}" in flags else "", "folders": class_folders(tmp_path) if "{folders}" in flags else ""}
    before = folder_hash(finished)
    proc = run_main("finetune.py", "--data_dir", tiny_aircraft, *TINY_TRAIN_ARGS, "--ckpt_save_dir", finished,
                    "--resume", os.path.join(finished, "resume.ckpt"), *[flag.format(**places) for flag in flags])
    assert_one_line_error(proc, needle, code=code)
    assert folder_hash(finished) == before, kind                       # summary.json, split/, the lock: as they were
    assert run_folder.status(finished) == "finished"
