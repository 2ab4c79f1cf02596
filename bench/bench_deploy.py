"""Deployment speed: ONNX Runtime (float and int8, from export.py --quantize int8) vs the suite's MindSpore predict.py
path, batch 1 latency and batch 32 images/s, the process start-up apart; and one-image prediction from process start
to CSV written: the suite's predict.py vs the bundle's predict.py (export.py --out DIR).

    .venv/bin/python bench/bench_deploy.py --runs runs/demo runs/v3demo [--bundles DIR ...] [--repeats 5]

``--runs``: run folders (config.yaml and a *_best.ckpt or else *_last.ckpt), each exported beforehand with
``export.py --config RUN/config.yaml --ckpt_path RUN/<name>_best.ckpt --quantize int8 --out RUN/export/model``
(the bench reads RUN/export/model.onnx and model.int8.onnx; with ``--bundles``, the bundle's).

Compute is timed in a worker process per engine, so MindSpore and ONNX Runtime never share a process (the ONNX
Runtime worker imports onnxruntime, onnx and numpy, no MindSpore). The same random batch (seed 0) goes to every
engine; ONNX Runtime's batch-32 figure runs a copy of the file with its batch dimension set to 32 (the exported
files take one image per call). Latency: median of ``--calls`` calls on one image after a warm-up (MindSpore: the
first call, which compiles the graph, is left out); images/s: median over ``--calls`` batches of 32.

Start-up, timed as new processes, round-robin over ``--repeats``: ONNX Runtime imported and the file loaded vs
MindSpore and MindCV imported, the network built and the checkpoint loaded (as predict.py does); and from start to
CSV written, ``predict.py --input IMAGE --out X.csv`` (the suite, MindSpore) vs ``BUNDLE/predict.py IMAGE --out
X.csv`` (``--bundles``, one per run, in order; ``--bundle_python``: the interpreter of an environment that has only
onnxruntime, numpy and Pillow). Every line gives the load average.
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

import common

BATCH = 32
MINDSPORE_START = "mindspore import + network + checkpoint"
SUITE_TO_CSV = "suite predict.py, one image to CSV"


def load():
    return round(os.getloadavg()[0], 2)


# ------------------------------------------------------------------------------------------------- workers
def _timed_calls(call, calls):
    times = []
    for _ in range(calls):
        begin = time.perf_counter()
        call()
        times.append(time.perf_counter() - begin)
    return times


def _batch(shape, count):
    import numpy as np

    return np.random.default_rng(0).normal(size=(count, *shape[1:])).astype(np.float32)


def onnxruntime_worker(path, calls):
    """Load time, batch-1 latency and batch-32 images/s of one ONNX file in ONNX Runtime (no MindSpore here)."""
    import onnx
    import onnxruntime

    begin = time.perf_counter()
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    loaded = time.perf_counter() - begin
    name = session.get_inputs()[0].name
    shape = session.get_inputs()[0].shape
    one = _batch(shape, 1)
    for _ in range(5):
        session.run(None, {name: one})
    latency = common.median(_timed_calls(lambda: session.run(None, {name: one}), calls))
    model = onnx.load(path)
    for value in (model.graph.input[0], model.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_value = BATCH
    del model.graph.value_info[:]      # shapes inferred for one image
    batched = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    many = _batch(shape, BATCH)
    batched.run(None, {name: many})
    per_batch = common.median(_timed_calls(lambda: batched.run(None, {name: many}), calls))
    return {"load_s": loaded, "latency_ms": 1000 * latency, "images_per_s": BATCH / per_batch}


def mindspore_worker(run_dir, calls):
    """Batch-1 latency and batch-32 images/s of the checkpoint's network as predict.py builds and runs it (GRAPH
    mode; each batch size's first call compiles and is left out)."""
    import mindspore as ms

    network, cfg = mindspore_build(run_dir)
    network.set_train(False)
    shape = (1, cfg.in_channels, cfg.image_resize, cfg.image_resize)
    out = {}
    for count, key in ((1, "latency_ms"), (BATCH, "images_per_s")):
        images = ms.Tensor(_batch(shape, count))
        begin = time.perf_counter()
        network(images).asnumpy()
        out[f"first_call_s_batch{count}"] = time.perf_counter() - begin
        seconds = common.median(_timed_calls(lambda: network(images).asnumpy(), calls))
        out[key] = 1000 * seconds if count == 1 else BATCH / seconds
    return out


# ------------------------------------------------------------------------------------------------- driver
def checkpoint_of(run_dir):
    found = sorted(glob.glob(os.path.join(run_dir, "*_best.ckpt"))) or sorted(glob.glob(os.path.join(run_dir,
                                                                                                       "*_last.ckpt")))
    if not found:
        raise SystemExit(f"no *_best.ckpt or *_last.ckpt in {run_dir}")
    return found[0]


def worker(kind, target, calls):
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", kind, target, "--calls", str(calls)],
                          cwd=common.ROOT, env=dict(os.environ, GLOG_v="3"), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} worker failed on {target}:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def wall(cmd, check_file=None):
    """Seconds from start to exit of ``cmd`` (a new process), and the load average then; ``check_file`` must exist
    after it (the CSV)."""
    begin = time.perf_counter()
    proc = subprocess.run(cmd, cwd=common.ROOT, env=dict(os.environ, GLOG_v="3"), capture_output=True, text=True)
    seconds = time.perf_counter() - begin
    if proc.returncode != 0 or (check_file and not os.path.isfile(check_file)):
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return seconds


def first_test_image(run_dir):
    from tools.core.config import parse_config
    from tools.datasets.loader import open_split

    cfg = parse_config(["--config", os.path.join(run_dir, "config.yaml")], "b")
    return os.path.abspath(common.quiet(open_split, cfg, cfg.val_split).paths[0])


def exported_base(run_dir, bundle):
    """Where the run's model.onnx and model.int8.onnx are: the bundle folder when given, else RUN/export/."""
    return os.path.join(bundle or os.path.join(run_dir, "export"), "model")


def startup_commands(run_dir, bundle, bundle_python, image, tmp):
    """``{name: (command, CSV it must write or None)}`` of the start-up measures of one run."""
    py, model = sys.executable, exported_base(run_dir, bundle)
    session = "import onnxruntime as r, sys; r.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])"
    commands = {"onnxruntime import + load (float)": ([py, "-c", session, model + ".onnx"], None),
                "onnxruntime import + load (int8)": ([py, "-c", session, model + ".int8.onnx"], None),
                MINDSPORE_START: ([py, os.path.abspath(__file__), "--worker", "build", run_dir], None)}
    csv = os.path.join(tmp, "suite.csv")
    commands[SUITE_TO_CSV] = (
        [py, "predict.py", "--config", os.path.join(run_dir, "config.yaml"), "--ckpt_path", checkpoint_of(run_dir),
         "--input", image, "--out", csv, "--out_dir", tmp], csv)
    if bundle:
        for label, extra in (("float", []), ("int8", ["--model", os.path.join(bundle, "model.int8.onnx")])):
            out = os.path.join(tmp, f"bundle_{label}.csv")
            commands[f"bundle predict.py ({label}), one image to CSV"] = (
                [bundle_python, os.path.join(bundle, "predict.py"), image, "--out", out, *extra], out)
    return commands


def mindspore_build(run_dir, calls=None):
    """What predict.py does before its first image: import MindSpore and MindCV, build the network, load the
    checkpoint (the start-up measure; ``calls`` unused, as the other workers'). Returns the network and its
    configuration."""
    from tools.core import runtime
    from tools.core.config import parse_config
    from tools.models.factory import checkpoint_network, class_names_of, numbered_classes, read_checkpoint

    cfg = parse_config(["--config", os.path.join(run_dir, "config.yaml"), "--ckpt_path", checkpoint_of(run_dir)], "b")
    common.quiet(runtime.setup, cfg)
    params = read_checkpoint(cfg.ckpt_path)
    return common.quiet(checkpoint_network, cfg, params, class_names_of(params) or numbered_classes(cfg)), cfg


def measure_run(run_dir, bundle, args, tmp):
    model = exported_base(run_dir, bundle)
    compute = {"onnxruntime float": worker("onnxruntime", model + ".onnx", args.calls),
               "onnxruntime int8": worker("onnxruntime", model + ".int8.onnx", args.calls),
               "mindspore (suite predict.py path)": worker("mindspore", run_dir, args.calls)}
    for name, row in compute.items():
        print(f"  {name}: latency {row['latency_ms']:.2f} ms, batch {BATCH} {row['images_per_s']:.0f} images/s  "
              f"load {load()}", flush=True)
    commands = startup_commands(run_dir, bundle, args.bundle_python, first_test_image(run_dir), tmp)
    startup = {name: [] for name in commands}
    for repeat in range(args.repeats):       # round-robin: each repeat times every command once
        for name, (cmd, csv) in commands.items():
            if csv and os.path.exists(csv):
                os.remove(csv)
            startup[name].append({"seconds": wall(cmd, csv), "load": load()})
        print(f"  start-up repeat {repeat + 1}: " + ", ".join(f"{n} {r[-1]['seconds']:.2f}s" for n, r in
                                                              startup.items()) + f"  load {load()}", flush=True)
    return {"compute": compute, "startup": startup,
            "startup_median_s": {n: common.median([r["seconds"] for r in rows]) for n, rows in startup.items()}}


WORKERS = {"onnxruntime": onnxruntime_worker, "mindspore": mindspore_worker, "build": mindspore_build}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", help="run folders, each exported to RUN/export/model (see --help text)")
    parser.add_argument("--bundles", nargs="*", default=[], help="bundle folders of export.py --out DIR, one per run")
    parser.add_argument("--bundle_python", default=sys.executable, help="interpreter that runs the bundle's predict.py")
    parser.add_argument("--repeats", type=int, default=5, help="start-up repeats (round-robin)")
    parser.add_argument("--calls", type=int, default=50, help="timed calls per compute figure")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "TARGET"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        kind, target = args.worker
        result = WORKERS[kind](target, args.calls)
        if kind != "build":
            print(json.dumps(result))
        return 0
    if not args.runs or (args.bundles and len(args.bundles) != len(args.runs)):
        parser.error("give --runs RUN ... (and --bundles, if any, one per run)")
    out, rows = {**common.report_header(), "runs": {}}, []
    with tempfile.TemporaryDirectory(prefix="bench_deploy.") as tmp:
        for i, run_dir in enumerate(args.runs):
            print(f"{run_dir}:", flush=True)
            bundle = args.bundles[i] if args.bundles else None
            result = out["runs"][run_dir] = measure_run(run_dir, bundle, args, tmp)
            compute, starts = result["compute"], result["startup_median_s"]
            ms_row = compute["mindspore (suite predict.py path)"]
            for name, row in compute.items():
                rows.append([os.path.basename(os.path.normpath(run_dir)), name, row["latency_ms"],
                             f"{ms_row['latency_ms'] / row['latency_ms']:.1f}x", row["images_per_s"],
                             f"{row['images_per_s'] / ms_row['images_per_s']:.1f}x"])
            for name, seconds in starts.items():   # against the MindSpore process doing the same
                reference = starts[SUITE_TO_CSV if "to CSV" in name else MINDSPORE_START]
                rows.append([os.path.basename(os.path.normpath(run_dir)), name, f"{seconds:.2f} s",
                             f"{reference / seconds:.1f}x", "-", "-"])
    return common.finish("bench_deploy", out, ["run", "engine / process", "batch 1 latency ms (or wall s)",
                                               "vs MindSpore", f"batch {BATCH} images/s", "vs MindSpore"], rows,
                         "target: one image from process start to CSV, bundle predict.py >= 3x faster than the suite's "
                         "predict.py (rows 'to CSV', column 'vs MindSpore')")


if __name__ == "__main__":
    sys.exit(main())
