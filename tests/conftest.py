"""Shared fixtures: tiny datasets cut from the committed demo data, and a script runner."""
import csv
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import types
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "data", "fashion_mnist")
os.environ.setdefault("GLOG_v", "3")

TINY_CLASSES = ["T-shirt/top", "Trouser", "Sneaker", "Ankle boot", "Bag"]


RUNS_A_SCRIPT = {"run_script", "run_main", "run_parallel", "Popen", "subprocess"}  # what makes a test end-to-end


def _calls_a_runner(function, module, seen):
    """Whether ``function`` (or a function of ``module`` it names, or code nested in it) runs a script."""
    if function in seen:
        return False
    seen.add(function)
    codes, names = [function.__code__], set()
    while codes:
        code = codes.pop()
        names |= set(code.co_names)
        codes += [const for const in code.co_consts if isinstance(const, types.CodeType)]
    if names & RUNS_A_SCRIPT:
        return True
    return any(_calls_a_runner(obj, module, seen) for obj in (getattr(module, name, None) for name in names)
               if isinstance(obj, types.FunctionType) and obj.__module__ == module.__name__)


def pytest_collection_modifyitems(items):
    """Mark ``cli`` every test under tests/cli/ and every other test that runs one of the suite's scripts (a
    process or its ``main``), itself or through a fixture or helper: ``pytest -m "not cli"`` runs the unit
    tests alone."""
    for item in items:
        functions = [item.function] + [fixture.func for name in item.fixturenames
                                       for fixture in item._fixtureinfo.name2fixturedefs.get(name, ())]
        if "cli" in item.path.parent.parts or any(
                _calls_a_runner(function, sys.modules[function.__module__], set()) for function in functions):
            item.add_marker(pytest.mark.cli)


def make_tiny_aircraft(out, classes=TINY_CLASSES, per_class=None, names_file=True):
    """An Aircraft-layout folder with ``per_class[split]`` demo images of each of ``classes``."""
    per_class = per_class or {"trainval": 8, "test": 4}
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    for split, count in per_class.items():
        taken, lines = {c: 0 for c in classes}, []
        with open(os.path.join(DEMO, f"images_variant_{split}.txt"), encoding="utf-8") as f:
            for line in f:
                image_id, label = line.rstrip("\n").split(" ", 1)
                if label in taken and taken[label] < count:
                    taken[label] += 1
                    lines.append(f"{image_id} {label}\n")
                    shutil.copy(os.path.join(DEMO, "images", image_id + ".jpg"), os.path.join(out, "images"))
        with open(os.path.join(out, f"images_variant_{split}.txt"), "w", encoding="utf-8") as f:
            f.writelines(lines)
    if names_file:
        with open(os.path.join(out, "variants.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(classes) + "\n")
    return out


COLOURS = {"red": (200, 30, 30), "green": (30, 180, 40), "blue": (30, 40, 200), "yellow": (220, 210, 30)}


def make_colour_folder(out, per_class=20, flips_per_class=0, size=28, seed=0):
    """A folder of class folders (``out/<colour>/``) of noisy one-colour squares, a task a frozen random backbone's
    features already separate; the first ``flips_per_class`` images of each colour are planted in the next colour's
    folder (a known label error). Returns the planted images' paths."""
    rng, names, planted = np.random.default_rng(seed), list(COLOURS), []
    for index, name in enumerate(names):
        for i in range(per_class):
            pixels = np.array(COLOURS[name])[None, None, :] + rng.normal(0, 25, (size, size, 3))
            folder = os.path.join(out, names[(index + 1) % len(names)] if i < flips_per_class else name)
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, f"{name}_{i}.png")
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
            if i < flips_per_class:
                planted.append(path)
    return planted


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


IMBALANCED_COUNTS = {"T-shirt/top": 8, "Trouser": 8, "Sneaker": 8, "Ankle boot": 4, "Bag": 2}


def make_imbalanced(out):
    """A tiny Aircraft-layout folder whose trainval split holds ``IMBALANCED_COUNTS`` images per class."""
    make_tiny_aircraft(out, per_class={"trainval": 8, "test": 4})
    path = f"{out}/images_variant_trainval.txt"
    kept, taken = [], Counter()
    for line in open(path, encoding="utf-8"):
        label = line.rstrip("\n").split(" ", 1)[1]
        if taken[label] < IMBALANCED_COUNTS[label]:
            taken[label] += 1
            kept.append(line)
    open(path, "w", encoding="utf-8").writelines(kept)
    return out


@pytest.fixture
def mode(request):
    """Run the test in MindSpore mode ``request.param`` (0 GRAPH, 1 PYNATIVE), restoring the previous one."""
    import mindspore as ms

    previous = ms.get_context("mode")
    ms.set_context(mode=request.param)
    yield request.param
    ms.set_context(mode=previous)


@pytest.fixture(scope="session")
def tiny_aircraft(tmp_path_factory):
    """A read-only-by-convention 5-class Aircraft-layout dataset (8 trainval + 4 test per class)."""
    return make_tiny_aircraft(str(tmp_path_factory.mktemp("tiny") / "data"))


@pytest.fixture(scope="session")
def tiny_run(tiny_aircraft, tmp_path_factory):
    """One tiny GRAPH-mode fine-tuning run (``TINY_TRAIN_ARGS``) whose outputs several test modules read."""
    out = str(tmp_path_factory.mktemp("tiny_run"))
    proc = run_script("finetune.py", "--data_dir", tiny_aircraft, *TINY_TRAIN_ARGS, "--ckpt_save_dir", out)
    assert proc.returncode == 0, proc.stderr
    return {"out": out, "stdout": proc.stdout}


TINY_TRAIN_ARGS = ["--train_split", "trainval", "--val_split", "test", "--model", "mobilenet_v3_small_100",
                   "--image_resize", "32", "--batch_size", "8", "--epoch_size", "2", "--warmup_epochs", "0",
                   "--lr", "0.01", "--opt", "adamw", "--num_parallel_workers", "1", "--log_interval", "1",
                   "--crop_pct", "1.0", "--color_jitter", "0", "--dataset", ""]


def run_script(script, *args, cwd=ROOT):
    """Run one of the project's scripts as a user would; returns the CompletedProcess."""
    env = dict(os.environ, GLOG_v="3")
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def run_main(script, *args):
    """``script``'s ``main(argv)`` called in this process through ``tools.core.errors.run_cli``, as its command line
    does (its output and exit code), without a new process and MindSpore import: for the tests of a one-line
    error. Python's and the C++ libraries' output are both caught; the end of the process is played as far as
    the suite sees it (a run folder left with nothing in it is removed) and MindSpore's mode and device and the
    Python and NumPy random states are put back. Tests of process behaviour (signals, msrun) use run_script."""
    import importlib
    import io
    import random
    import tempfile
    from contextlib import redirect_stderr, redirect_stdout

    from tools.core.errors import run_cli
    from tools.train import run_folder

    import mindspore as ms

    module = importlib.import_module(os.path.splitext(script)[0].replace("/", "."))
    context = {key: ms.get_context(key) for key in ("mode", "device_target")}
    states = random.getstate(), np.random.get_state()
    out, err, code = io.StringIO(), io.StringIO(), None
    with tempfile.TemporaryFile("w+") as native:    # fds 1 and 2: what MindSpore's C++ side prints
        saved = [os.dup(1), os.dup(2)]
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(native.fileno(), 1)
        os.dup2(native.fileno(), 2)
        try:
            with redirect_stdout(out), redirect_stderr(err):
                try:
                    run_cli(module.main, [str(arg) for arg in args], watch_memory=False)
                except SystemExit as end:
                    code = end.code if isinstance(end.code, int) else (0 if end.code is None else 1)
                finally:
                    run_folder.leave_no_empty_folder()   # registered with atexit: what the process end does
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            ms.set_context(**context)
            random.setstate(states[0])
            np.random.set_state(states[1])
        native.seek(0)
        stderr = err.getvalue() + native.read()
    return subprocess.CompletedProcess([script, *args], code, out.getvalue(), stderr)


def assert_one_line_error(proc, *needles, code=None):
    """A failed run: non-zero (or ``code``) exit, no traceback, one stderr line naming ``needles``."""
    assert proc.returncode != 0 if code is None else proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def assert_png(path, width, height):
    """``path`` is a PNG of ``width`` x ``height`` pixels that is not blank."""
    with Image.open(path) as image:
        assert image.size == (width, height)
        pixels = np.asarray(image.convert("L"), dtype=np.float32)
    assert pixels.std() > 5, f"{path} looks blank"


# ---- one trained run's validate/predict/export outputs, shared by test_validate_predict.py and test_export.py

CKPT_NAME = "mobilenet_v3_small_100_last.ckpt"
SPLIT_TAG = "mobilenet_v3_small_100_last_test"  # predict.py names its outputs by what they cover
FAST = ["--mode", "1"]  # PyNative: no graph compilation, faster for one pass over 20 images


def demo_image(index=0):
    return os.path.join(DEMO, "images", sorted(os.listdir(os.path.join(DEMO, "images")))[index])


def make_inputs(folder):
    """Good images (jpg, png, gif in a subfolder) and bad ones; returns (good, bad) paths."""
    os.makedirs(os.path.join(folder, "sub"))
    good = [os.path.join(folder, "a.jpg"), os.path.join(folder, "b.JPEG"), os.path.join(folder, "sub", "c.png"),
            os.path.join(folder, "sub", "d.gif")]
    shutil.copy(demo_image(0), good[0])
    shutil.copy(demo_image(1), good[1])
    Image.open(demo_image(2)).save(good[2])
    Image.open(demo_image(3)).save(good[3])
    bad = [os.path.join(folder, name) for name in ("empty.jpg", "x.jpg", "truncated.jpg")]
    open(bad[0], "wb").close()
    with open(bad[1], "w") as f:
        f.write("this is not an image\n")
    data = open(demo_image(4), "rb").read()
    with open(bad[2], "wb") as f:
        f.write(data[: len(data) // 2])
    with open(os.path.join(folder, "notes.txt"), "w") as f:
        f.write("not an image name: not collected from a folder\n")
    return good, bad


def free_port():
    """A TCP port free now, for an msrun master (tests may run side by side: no fixed port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_parallel(*commands):
    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(lambda args: run_script(*args), commands))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_run):
    """On the session's tiny run: validate, predict (split and files), export and predict --mindir, once
    (test_validate_predict.py and test_export.py read the outputs)."""
    out = tiny_run["out"]
    cfg, ckpt = os.path.join(out, "config.yaml"), os.path.join(out, CKPT_NAME)
    base = ["--config", cfg, "--ckpt_path", ckpt, *FAST]
    inputs = str(tmp_path_factory.mktemp("inputs"))
    good, bad = make_inputs(inputs)
    dirs = {name: os.path.join(out, name) for name in ("split", "files", "mindir")}
    validate, split, files, export = run_parallel(
        ("validate.py", *base, "--out", os.path.join(out, "metrics.json")),    # reports beside the checkpoint
        ("predict.py", *base, "--split", "test", "--out_dir", dirs["split"], "--visualize"),
        ("predict.py", *base, "--input", inputs, "--format", "json", "--topk", "3", "--out_dir", dirs["files"],
         "--visualize", "--grid_size", "3"),
        ("export.py", *base, "--out", os.path.join(out, "model")))
    mindir = run_script("predict.py", "--config", cfg, "--mindir", os.path.join(out, "model", "model.mindir"), *FAST,
                        "--split", "test", "--out_dir", dirs["mindir"])
    return dict(out=out, dirs=dirs, good=good, bad=bad, validate=validate, split=split, files=files,
                export=export, mindir=mindir, bundle=os.path.join(out, "model"))


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def read_predictions(path):
    """``(header, rows as dicts)`` of predictions.csv."""
    table = read_csv(path)
    return table[0], [dict(zip(table[0], row)) for row in table[1:]]
