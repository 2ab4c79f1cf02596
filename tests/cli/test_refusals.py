"""A refused command touches nothing: every check of ``finetune.py`` (the resume state against the config, the
data, the values) comes before its first write; a finished run stays finished; a stop signal before
training leaves nothing behind."""
import os
import shutil
import signal
import subprocess
import sys
import time

from conftest import (
    ROOT,
    TINY_CLASSES,
    TINY_TRAIN_ARGS,
    assert_one_line_error,
    folder_hash,
    make_tiny_aircraft,
    run_main,
    run_script,
)
from tools.train import run_folder

import pytest


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
    "another model": (["--model", "resnet18"], "saved with model mobilenet_v3_small_100, this config has resnet18", 1),
    "other data": (["--data_dir", "{data4}"], "other classes or another class order (5 classes then, 4 now)", 1),
    "classes in another order": (["--data_dir", "{datarev}"], "class 0 was 'T-shirt/top', is 'Bag'", 1),
    "resume and overwrite": (["--overwrite", "True"], "contradict each other", 2),
    "a folder as resume": (["--resume", "{run}"], "is a folder; give its resume.ckpt", 1),
    "other data, val_fraction": (["--data_dir", "{folders}", "--val_fraction", "0.25", "--dataset_format", "auto"],
                                 "other classes or another class order", 1),
    "another optimizer": (["--opt", "momentum"], "resume with the run's own config", 1),
    "other frozen layers": (["--freeze_layers", "3"], "other frozen layers", 1),
    "other normalisation": (["--mean", "0", "0", "0"], "saved with mean [123.675, 116.28, 103.53], this config has", 1),
    "other padding": (["--tf_same_padding", "True"], "saved with tf_same_padding False", 1),
    "a bad value (no full batch)": (["--batch_size", "64"], "make no full batch", 2),
    "a bad value (num_classes)": (["--num_classes", "7"], "num_classes", 2),
    "a bad value (parse)": (["--lr", "-1"], "'lr' must be >= 0", 2),
    "not a resume state": (["--resume", "{run}/mobilenet_v3_small_100_last.ckpt"], "is not a resume checkpoint", 1),
}


@pytest.mark.parametrize("kind", REFUSALS)
def test_a_refused_resume_leaves_the_finished_run_byte_identical(kind, finished, tiny_aircraft, tmp_path):
    flags, needle, code = REFUSALS[kind]
    places = {"run": finished, "data4": make_tiny_aircraft(str(tmp_path / "data4"), classes=TINY_CLASSES[:4])
              if "{data4}" in flags else "",
              "datarev": make_tiny_aircraft(str(tmp_path / "datarev"), classes=TINY_CLASSES[::-1])
              if "{datarev}" in flags else "", "folders": class_folders(tmp_path) if "{folders}" in flags else ""}
    before = folder_hash(finished)
    proc = run_main("finetune.py", "--data_dir", tiny_aircraft, *TINY_TRAIN_ARGS, "--ckpt_save_dir", finished,
                    "--resume", os.path.join(finished, "resume.ckpt"), *[flag.format(**places) for flag in flags])
    assert_one_line_error(proc, needle, code=code)
    assert folder_hash(finished) == before, kind                       # summary.json, split/, the lock: as they were
    assert run_folder.status(finished) == "finished"


def test_a_finished_run_resumed_with_its_epoch_size_has_nothing_to_do(finished, tiny_aircraft):
    before = folder_hash(finished)
    proc = run_main("finetune.py", "--data_dir", tiny_aircraft, *TINY_TRAIN_ARGS, "--ckpt_save_dir", finished,
                    "--resume", os.path.join(finished, "resume.ckpt"))
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr
    assert f"{finished}: the run finished its 2 epochs (epoch_size 2): nothing to do" in proc.stdout, proc.stdout
    assert "steps/epoch" not in proc.stdout
    assert folder_hash(finished) == before and run_folder.status(finished) == "finished"


def test_config_yaml_does_not_carry_resume_or_overwrite_into_the_next_run(tmp_path):
    """A run's config.yaml used again with --config (e.g. with a new ckpt_save_dir) starts a new run: it
    neither resumes nor overwrites the run that wrote it."""
    from tools.core.config import parse_config, save_config

    run = tmp_path / "run"
    cfg = parse_config(["--ckpt_save_dir", str(run), "--resume", str(run / "resume.ckpt")], "test")
    cfg.overwrite = True  # not a combination a command can give (refused), but save_config must drop both
    save_config(cfg, str(run / "config.yaml"))
    text = (run / "config.yaml").read_text()
    assert "resume:" not in text.replace("resume_opt:", "") and "overwrite:" not in text
    again = parse_config(["--config", str(run / "config.yaml"), "--ckpt_save_dir", str(tmp_path / "new")], "test")
    assert again.resume == "" and again.overwrite is False and again.ckpt_save_dir == str(tmp_path / "new")


FAST = [*TINY_TRAIN_ARGS, "--mode", "1", "--model", "resnet18", "--opt", "momentum"]  # the quickest to start


def test_overwrite_removes_the_previous_runs_files_and_says_so(tiny_aircraft, tmp_path):
    out = tmp_path / "run"
    first = run_script("finetune.py", "--data_dir", tiny_aircraft, *FAST, "--epoch_size", "3", "--ckpt_save_dir", out,
                       "--tensorboard", "True")
    assert first.returncode == 0, first.stderr
    assert {"resnet18-3.ckpt", "resnet18-2.ckpt", "tensorboard", "summary.json"} <= set(os.listdir(out))
    (out / "notes.txt").write_text("the user's own file\n")
    second = run_script("finetune.py", "--data_dir", tiny_aircraft, *FAST, "--epoch_size", "1", "--ckpt_save_dir", out,
                        "--overwrite", "True")
    assert second.returncode == 0, second.stderr
    notes = [line for line in second.stdout.splitlines() if "overwrite: True removed" in line]
    assert len(notes) == 1 and str(out) in notes[0] and "resnet18-3.ckpt" in notes[0], second.stdout
    names = set(os.listdir(out))
    assert "resnet18-2.ckpt" not in names and "resnet18-3.ckpt" not in names and "tensorboard" not in names
    assert {"resnet18-1.ckpt", "resnet18_last.ckpt", "summary.json", "notes.txt"} <= names
    assert len((out / "results.csv").read_text().splitlines()) == 2   # header and the new run's one epoch
    assert run_folder.status(str(out)) == "finished"


@pytest.mark.parametrize("signum, line", [(signal.SIGINT, "checking 600 new images of split 'trainval'"),
                                          (signal.SIGTERM, "split 'test': 200 images")])   # the model build follows
def test_a_stop_signal_before_training_stops_at_once_and_leaves_no_folder(signum, line, tmp_path):
    """SIGINT in the data check, SIGTERM in the model build (the line each waits for starts that phase)."""
    out = tmp_path / "run"
    cmd = [sys.executable, os.path.join(ROOT, "finetune.py"), "--data_dir", os.path.join(ROOT, "data", "fashion_mnist"),
           *FAST, "--check_cache_dir", "off", "--ckpt_save_dir", out]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, GLOG_v="3"))
    seen = []
    for text in proc.stdout:
        seen.append(text)
        if line in text:
            proc.send_signal(signum)
            sent = time.monotonic()
            break
    else:
        pytest.fail("".join(seen))
    rest = proc.stdout.read()
    code = proc.wait(timeout=60)
    seconds = time.monotonic() - sent
    output = "".join(seen) + rest
    print(f"{signum.name}: stopped {seconds:.2f} s after the signal")
    assert code == 128 + signum, output
    assert seconds < 10, output
    assert not out.exists(), os.listdir(out)                            # no run folder left
    assert "Traceback" not in output and "epochs are saved" not in output and "steps/epoch" not in output, output
    assert f"{'stopped by SIGTERM' if signum == signal.SIGTERM else 'interrupted'} before training began: " \
           "nothing was trained or written" in output, output


@pytest.mark.parametrize("script, signum, what", [
    ("validate.py", signal.SIGTERM, "before finishing: nothing was written"),
    ("predict.py", signal.SIGINT, "before finishing: nothing was written"),
    ("export.py", signal.SIGTERM, "before finishing: nothing was exported"),
])
def test_a_stop_signal_in_an_evaluation_script_stops_at_once_in_one_line(script, signum, what, finished, tmp_path):
    """validate/predict/export stop within a second of Ctrl-C or SIGTERM in their data check, with one line and
    128 + signal (MindSpore's handlers had made it exit 0 or 143 in silence), writing nothing."""
    out = tmp_path / "out"
    data = make_tiny_aircraft(str(tmp_path / "data"), per_class={"trainval": 60, "test": 4})  # its 5 classes
    flags = {"validate.py": ["--split", "trainval", "--report_dir", out], "predict.py": ["--split", "trainval",
             "--out_dir", out], "export.py": ["--out", f"{out}/"]}
    cmd = [sys.executable, os.path.join(ROOT, script), "--config", os.path.join(finished, "config.yaml"),
           "--ckpt_path", os.path.join(finished, "mobilenet_v3_small_100_last.ckpt"), "--mode", "1",
           "--data_dir", data, "--check_cache_dir", "off", "--val_split", "trainval", *map(str, flags[script])]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, GLOG_v="3"))
    seen = []
    for text in proc.stdout:
        seen.append(text)
        if "checking" in text:
            proc.send_signal(signum)
            sent = time.monotonic()
            break
    else:
        pytest.fail("".join(seen))
    output = "".join(seen) + proc.stdout.read()
    code = proc.wait(timeout=60)
    assert code == 128 + signum, output
    assert time.monotonic() - sent < 10, output
    assert "Traceback" not in output, output
    assert f"{'stopped by SIGTERM' if signum == signal.SIGTERM else 'interrupted'} {what}" in output, output
    assert not out.exists()


def test_the_stop_line_claims_saved_epochs_only_when_there_are_some(tmp_path, capsys):
    from types import SimpleNamespace

    from tools.core.stop_signals import Stopped
    from tools.train.trainer import Trainer

    from mindspore import nn

    net = nn.Dense(3, 2)
    trainer = Trainer(SimpleNamespace(ckpt_save_dir=str(tmp_path), model="dense", seed=1, loss_scale_type="fixed"),
                      net, net, [0.1], ["a", "b"])

    def stopped(*args):
        raise Stopped(signal.SIGTERM)

    trainer._fit = stopped
    lines = []
    for before in (lambda: None, lambda: trainer.save_state(0, step=(2, 1.0)),
                   lambda: trainer.rows.append({"epoch": 1})):
        before()
        with pytest.raises(Stopped):
            trainer.fit(None, None)
        lines.append(capsys.readouterr().err.strip())
    assert lines[0].startswith(f"stopped by SIGTERM; no epoch finished yet, nothing trained is saved in {tmp_path}")
    assert lines[1].startswith("stopped by SIGTERM; no epoch finished yet, the last recovery state is saved in")
    assert lines[2].startswith(f"stopped by SIGTERM; finished epochs are saved in {tmp_path}: continue with")


def test_overwrite_refused_leaves_the_previous_run_whole(finished, tiny_aircraft):
    """overwrite: True removes the previous run's files only once every check passed."""
    before = folder_hash(finished)
    proc = run_main("finetune.py", "--data_dir", tiny_aircraft, *TINY_TRAIN_ARGS, "--ckpt_save_dir", finished,
                    "--overwrite", "True", "--batch_size", "64")
    assert_one_line_error(proc, "make no full batch", code=2)
    assert folder_hash(finished) == before and run_folder.status(finished) == "finished"


EVAL_REFUSALS = [  # (script, flags after --config/--ckpt_path of the run, a part of the one error line, exit code)
    ("validate.py", ["--split", "nosuch"], "split 'nosuch' not found", 1),
    ("validate.py", ["--tta", "vflip"], "'tta'", 2),
    ("validate.py", ["--report_dir", "{run}"], "report.html", 2),
    ("validate.py", ["--ckpt_path", "{run}"], "is a folder, not a file", 1),
    ("validate.py", ["--model", "resnet18"], "resnet18", 1),
    ("predict.py", ["--input", "{run}/none.jpg"], "none.jpg", 1),
    ("predict.py", ["--top_k", "0"], "top_k", 2),
    ("export.py", ["--format", "tflite"], "expected one of MINDIR, ONNX, BOTH", 2),
    ("export.py", ["--ckpt_path", "{run}/empty.ckpt"], "is an empty file (0 bytes)", 1),
]


@pytest.mark.parametrize("script, flags, needle, code", EVAL_REFUSALS,
                         ids=[f"{s[:-3]}-{f[0].strip('-')}" for s, f, *_ in EVAL_REFUSALS])
def test_a_refused_evaluation_leaves_the_run_byte_identical(script, flags, needle, code, finished):
    """validate/predict/export refusals (bad values, a mismatched or unreadable checkpoint, a report_dir that is
    a run folder) leave the run folder, its earlier reports and exports, byte for byte as they were."""
    open(os.path.join(finished, "empty.ckpt"), "wb").close()
    base = ["--config", os.path.join(finished, "config.yaml"), "--ckpt_path",
            os.path.join(finished, "mobilenet_v3_small_100_last.ckpt"), "--mode", "1"]
    before = folder_hash(finished)
    proc = run_main(script, *base, *[flag.format(run=finished) for flag in flags])
    assert_one_line_error(proc, needle, code=code)
    assert folder_hash(finished) == before


SWALLOWED_STOP = """
import sys, time
sys.path.insert(0, {root!r})
from tools.core import stop_signals
stop_signals.route_to_main_thread()

class Slow:
    def __del__(self):  # a stop landing here cannot propagate: Python would print "Exception ignored" and go on
        print("in __del__", flush=True)
        end = time.time() + 5
        while time.time() < end:
            pass

slow = Slow()
del slow
print("went on", flush=True)
"""


def test_a_stop_that_lands_where_it_cannot_propagate_ends_the_process_quietly():
    proc = subprocess.Popen([sys.executable, "-c", SWALLOWED_STOP.format(root=ROOT)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "in __del__\n"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert "went on" not in out
