"""Shared helpers of the benchmarks: machine description, timing statistics, JSON output, synthetic
Aircraft-layout data made from the committed demo images, and the suite's objects built the way
finetune.py builds them.

Nothing here is imported by the suite; every benchmark is ``.venv/bin/python bench/<name>.py``.
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # the repository root: bench/ runs as python bench/x.py

DEMO = os.path.join(ROOT, "data", "fashion_mnist")
DEMO_CONFIG = os.path.join(ROOT, "configs", "demo.yaml")
AIRCRAFT_CONFIG = os.path.join(ROOT, "configs", "mobilenetv3", "mobilenet_v3_small_aircraft.yaml")
OUT_DIR = os.path.join(ROOT, "runs", "bench")


# ----------------------------------------------------------------------------------------- machine
def cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine():
    """nproc, CPU model, versions and the load average when the benchmark started."""
    info = {"nproc": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version()}
    try:
        import mindcv
        import mindspore
        info["mindspore"] = mindspore.__version__
        info["mindcv"] = mindcv.__version__
    except ImportError:
        pass
    try:
        info["loadavg_start"] = [round(x, 2) for x in os.getloadavg()]
        with open("/proc/meminfo", encoding="utf-8") as f:
            info["mem_total_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    return info


def machine_line(info):
    return (f"machine: {info.get('nproc')} CPUs ({info.get('cpu')}), MindSpore {info.get('mindspore')}, "
            f"MindCV {info.get('mindcv')}, Python {info.get('python')}, load average at start "
            f"{info.get('loadavg_start')}")


def report_header():
    """Print the machine line; the start of every benchmark's JSON: the machine facts and the command that
    reproduces it."""
    info = machine()
    print(machine_line(info), flush=True)
    script = os.path.relpath(os.path.abspath(sys.argv[0]), ROOT)
    return {"machine": info, "command": " ".join([script, *sys.argv[1:]])}


# ----------------------------------------------------------------------------------------- numbers
def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def spread(values):
    values = [v for v in values if v is not None]
    return (min(values), max(values)) if values else (None, None)


def fmt(value, digits=1):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_table(headers, rows):
    """A Markdown table (also readable on a terminal)."""
    cells = [[fmt(c) if not isinstance(c, str) else c for c in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("| " + " | ".join(str(h).ljust(w) for h, w in zip(headers, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")


def write_json(name, payload):
    os.makedirs(OUT_DIR, exist_ok=True)
    path = os.path.join(OUT_DIR, f"{name}.json")
    payload = dict(payload)
    payload.setdefault("finished_utc", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    try:
        payload.setdefault("loadavg_end", [round(x, 2) for x in os.getloadavg()])
    except OSError:
        pass
    with open(path, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2)
    print(f"wrote {os.path.relpath(path, ROOT)}")
    return path


def vm_hwm_mb():
    """Peak resident set size of this process in MB (VmHWM)."""
    with open("/proc/self/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


# ----------------------------------------------------------------------------------------- data
def demo_entries(split):
    with open(os.path.join(DEMO, f"images_variant_{split}.txt"), encoding="utf-8") as f:
        return [tuple(line.rstrip("\n").split(" ", 1)) for line in f if line.strip()]


def make_upscaled_jpegs(out_dir, count, size=(500, 375), noise=6.0, quality=90, seed=0):
    """``count`` distinct JPEGs of ``size`` made from demo images (bilinear upscale + mild noise so that
    they encode to a realistic ~30-60 KB); returns ``[(path, demo label), ...]``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    os.makedirs(out_dir, exist_ok=True)
    entries = demo_entries("trainval") + demo_entries("test")
    made = []
    for i in range(count):
        image_id, label = entries[i % len(entries)]
        img = Image.open(os.path.join(DEMO, "images", image_id + ".jpg")).convert("RGB").resize(size, Image.BILINEAR)
        arr = np.asarray(img, dtype=np.float32) + rng.normal(0, noise, (size[1], size[0], 3))
        path = os.path.join(out_dir, f"base{i:05d}.jpg")
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path, quality=quality)
        made.append((path, label))
    return made


def make_aircraft(out, trainval, test, num_classes=100, distinct=200, size=(500, 375), link=True, seed=0,
                  split_names=("trainval", "test")):
    """An FGVC-Aircraft raw layout in ``out`` (``images/<7-digit id>.jpg``, ``variants.txt``,
    ``images_variant_{trainval,test}.txt``, or the two ``split_names``) with ``trainval + test`` images of ``size``.

    ``distinct`` real JPEGs are made from demo images; the rest are hard links to them (``link``) or
    copies, so 10,000 images cost little disk. Labels are ``num_classes`` Aircraft-like names with
    spaces and '/' (``Variant 07/B``). Returns ``out``.
    """
    images = os.path.join(out, "images")
    os.makedirs(images, exist_ok=True)
    base_dir = os.path.join(out, ".base")
    bases = make_upscaled_jpegs(base_dir, min(distinct, trainval + test), size=size, seed=seed)
    names = [f"Variant {k:02d}" + ("/B" if k % 10 == 3 else "") for k in range(num_classes)]
    lines = {name: [] for name in split_names}
    for n in range(trainval + test):
        image_id = f"{1000000 + n:07d}"
        src = bases[n % len(bases)][0]
        dst = os.path.join(images, image_id + ".jpg")
        if link:
            os.link(src, dst)
        else:
            shutil.copyfile(src, dst)
        split = split_names[0] if n < trainval else split_names[1]
        lines[split].append(f"{image_id} {names[n % num_classes]}\n")
    for split, rows in lines.items():
        with open(os.path.join(out, f"images_variant_{split}.txt"), "w", encoding="utf-8") as f:
            f.writelines(rows)
    with open(os.path.join(out, "variants.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(names) + "\n")
    shutil.rmtree(base_dir)  # the links keep the files
    return out


def make_demo_subset(out, trainval=None, test=None):
    """The demo data (28 px Fashion-MNIST JPEGs, 10 classes), optionally cut to the first N lines."""
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    for split, count in (("trainval", trainval), ("test", test)):
        rows = demo_entries(split)[:count] if count else demo_entries(split)
        with open(os.path.join(out, f"images_variant_{split}.txt"), "w", encoding="utf-8") as f:
            for image_id, label in rows:
                f.write(f"{image_id} {label}\n")
                shutil.copyfile(os.path.join(DEMO, "images", image_id + ".jpg"),
                                os.path.join(out, "images", image_id + ".jpg"))
    shutil.copyfile(os.path.join(DEMO, "variants.txt"), os.path.join(out, "variants.txt"))
    return out


def folder_tree(data_dir, out_dir):
    """The ImageNet-style tree of ``data_dir`` made as tools/split_aircraft.py makes it (hardlinks), quietly."""
    from tools.datasets.aircraft_tree import make_tree

    quiet(make_tree, os.path.abspath(data_dir), os.path.abspath(out_dir), ["trainval", "test"], "variant", "hardlink")
    return out_dir


# ----------------------------------------------------------------------------------------- suite
def suite_config(config_file, **overrides):
    """The configuration finetune.py would resolve for ``--config config_file --key value ...``."""
    from tools.core.config import parse_config

    argv = ["--config", config_file]
    for key, value in overrides.items():
        argv.append(f"--{key}")
        if isinstance(value, (list, tuple)):
            argv += [str(v) for v in value]
        else:
            argv.append(str(value))
    return parse_config(argv, "bench")


def quiet(fn, *args, **kwargs):
    """Call ``fn`` with its stdout swallowed (the suite prints parameter tables)."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


class SuiteRun:
    """Exactly finetune.py's objects for ``cfg`` (``tools.train.wiring.build_training``: data, loaders, network,
    freezing, loss, lr, optimizer, train step on the gradient-cut network or, with ``cache_features``, on
    the head over cached features) and its Trainer, without the checkpoint/validation side of ``fit``.
    ``extract_seconds``: the feature cache's one-off cost as finetune.py pays it, else None."""

    def __init__(self, cfg):
        from tools.core import runtime
        from tools.train.trainer import Trainer
        from tools.train.wiring import build_training

        self.cfg = cfg
        quiet(runtime.setup, cfg)  # mode (GRAPH unless the config says otherwise), device, seeds, as finetune.py
        run = quiet(build_training, cfg, verbose=False)
        self.data, self.num_classes, self.loader, self.steps = (run.train_data, run.num_classes,
                                                                run.train_loader, run.steps)
        self.network, self.frozen, self.train_step = run.network, run.frozen, run.train_step
        self.extract_seconds = run.extract_seconds
        self.teacher = run.teacher  # distillation's Teacher (its cache_seconds with cache_teacher), or None
        self.trainer = Trainer(cfg, self.network, self.train_step, run.lrs, self.data.class_names)

    def epoch(self, epoch=1):
        """One timed training epoch through Trainer.train_epoch; returns (seconds, images)."""
        begin = time.perf_counter()
        self.trainer.train_epoch(self.loader, epoch, self.steps)
        return time.perf_counter() - begin, self.steps * self.cfg.batch_size


def fake_batch(cfg, num_classes, seed=0):
    """An in-memory batch of the training shape (float32 NCHW images, int32 labels)."""
    import mindspore as ms
    import numpy as np

    rng = np.random.default_rng(seed)
    images = rng.standard_normal((cfg.batch_size, 3, cfg.image_resize, cfg.image_resize)).astype(np.float32)
    labels = rng.integers(0, num_classes, cfg.batch_size).astype(np.int32)
    return ms.Tensor(images), ms.Tensor(labels)


def time_steps(step, inputs, steps):
    """Seconds for ``steps`` calls of ``step(*inputs)``, each synchronised by reading the loss."""
    begin = time.perf_counter()
    for _ in range(steps):
        out = step(*inputs)
        out = out[0] if isinstance(out, (tuple, list)) else out
        float(out.asnumpy())
    return time.perf_counter() - begin


def setting_spec(name, tmp, args, **overrides):
    """``(config, data_dir, overrides)`` of the "demo" or "aircraft" setting of a benchmark, its data made
    under ``tmp`` (``args.demo_images``: the first N demo images only, for a smoke test; ``args.aircraft_images``
    distinct training images); ``args.image_resize`` overrides the setting's resolution, ``overrides`` add keys."""
    extra = {"image_resize": args.image_resize} if args.image_resize else {}
    extra.update(overrides)
    if name == "demo":
        demo = make_demo_subset(os.path.join(tmp, "demo"), args.demo_images, 16) if args.demo_images else DEMO
        return DEMO_CONFIG, demo, dict(pretrained=False, ckpt_path="", log_interval=100000, **extra)
    air = make_aircraft(os.path.join(tmp, "aircraft"), trainval=args.aircraft_images, test=8,
                        distinct=args.aircraft_images)
    return AIRCRAFT_CONFIG, air, dict(pretrained=False, log_interval=100000, **extra)


# ----------------------------------------------------------------------------------------- settings
def settings_parser(description, aircraft_images):
    """The flags of the benchmarks that run the "demo" and "aircraft" settings (bench_loader, bench_probe,
    bench_train): which settings, how many repeats, and the size of their data; a benchmark adds its own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--settings", nargs="+", default=["demo", "aircraft"], choices=["demo", "aircraft"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--aircraft_images", type=int, default=aircraft_images, help="synthetic trainval images")
    parser.add_argument("--demo_images", type=int, help="smoke test: the first N demo trainval images only")
    parser.add_argument("--image_resize", type=int, help="smoke test: override the settings' resolution")
    return parser


def run_settings(args, prefix, run_setting, **overrides):
    """The machine line, then ``run_setting(name, spec, tmp)`` for each of ``args.settings`` (``spec``: its
    :func:`setting_spec` with ``overrides``, data made in a temporary folder ``tmp``); returns the JSON payload:
    the report header and ``{"settings": {name: result}}``."""
    out = {**report_header(), "settings": {}}
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        for name in args.settings:
            out["settings"][name] = run_setting(name, setting_spec(name, tmp, args, **overrides), tmp)
    return out


def finish(name, out, headers, rows, target):
    """A benchmark's last lines: its table, the target it is measured against, and ``runs/bench/<name>.json``."""
    print()
    print_table(headers, rows)
    print(target)
    write_json(name, out)
    return 0
