"""Knowledge distillation on the demo data: a small student fine-tuned alone vs distilled from a fine-tuned
teacher at the same epochs, and the time per epoch with the teacher online vs ``cache_teacher``.

    .venv/bin/python bench/bench_distill.py [--config configs/demo.yaml] [--teacher_dir runs/bench_distill/teacher]
        [--student mobilenet_v3_small_100] [--epochs 8] [--epoch_repeats 3] [--out runs/bench_distill] [--runs ...]

The teacher is the largest model the suite has ImageNet weights for offline: MobileNetV2-1.0 from the converted
Keras weights (README "Pretrained weights offline"), fine-tuned by ``finetune.py --config CONFIG`` into
``--teacher_dir``; a run folder that holds a finished run (summary.json) is read, not run again. No ImageNet
weights exist offline for a smaller model, so the student (MobileNetV3-small by default) starts from random
initialisation in both of its runs, with the config's recipe otherwise (augmentation, label smoothing, schedule,
epochs):

* ``alone``: the student fine-tuned on the labels;
* ``distilled``: the same with ``--teacher_model mobilenet_v2_100 --teacher_ckpt <teacher_dir>`` (the defaults
  distill_alpha 0.5, distill_temperature 4 unless ``--flags`` says otherwise);
* time per training epoch, in this process (``SuiteRun``: finetune.py's objects), on fixed views (scale and
  ratio [1, 1], no flip, no colour jitter): the student without a teacher, with the teacher online, and with
  ``cache_teacher: True`` (its one pass timed on its own), each compiled by one epoch first, then
  ``--epoch_repeats`` epochs round-robin, medians (the machine is shared: see bench/README.md).

Every Top-1 run is a finetune.py process; Top-1 is the best validation Top-1 (summary.json). Prints Markdown
tables and writes runs/bench/bench_distill.json (``--out`` other than the default: bench_distill_<folder>.json).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import common

TEACHER_MODEL = "mobilenet_v2_100"
FIXED_VIEWS = ["--scale", "1", "1", "--ratio", "1", "1", "--hflip", "0", "--color_jitter", "0"]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=os.path.join(common.ROOT, "configs", "demo.yaml"))
    parser.add_argument("--teacher_dir", default=os.path.join(common.ROOT, "runs", "bench_distill", "teacher"))
    parser.add_argument("--student", default="mobilenet_v3_small_100")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--epoch_repeats", type=int, default=3, help="timed epochs per variant (0: no timing)")
    parser.add_argument("--out", default=os.path.join(common.ROOT, "runs", "bench_distill"))
    parser.add_argument("--runs", nargs="*", default=["alone", "distilled"])
    parser.add_argument("--flags", nargs=argparse.REMAINDER, default=[], help="more finetune.py flags for the student")
    return parser.parse_args(argv)


def finetune(args, out, flags):
    """The summary.json of the finetune.py run in ``out``: read when ``out`` holds a finished run (delete the folder
    to measure again), else run (``wall_seconds`` added)."""
    if os.path.isfile(os.path.join(out, "summary.json")):
        print(f"reusing the finished run in {os.path.relpath(out, common.ROOT)}", flush=True)
        with open(os.path.join(out, "summary.json"), encoding="utf-8") as f:
            return json.load(f)
    cmd = [sys.executable, os.path.join(common.ROOT, "finetune.py"), "--config", args.config, "--ckpt_save_dir", out,
           "--overwrite", "True", *flags]
    print("$ " + " ".join(os.path.relpath(c, common.ROOT) if c.startswith(common.ROOT) else c for c in cmd[1:]),
          flush=True)
    begin = time.time()
    proc = subprocess.run(cmd, cwd=common.ROOT, env=dict(os.environ, GLOG_v="3"), capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"finetune.py failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    with open(os.path.join(out, "summary.json"), encoding="utf-8") as f:
        return dict(json.load(f), wall_seconds=time.time() - begin)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    header = common.report_header()
    results = {}
    results["teacher"] = finetune(args, args.teacher_dir, [])
    student = ["--model", args.student, "--ckpt_path", "", "--pretrained", "False", *args.flags]
    teach = ["--teacher_model", TEACHER_MODEL, "--teacher_ckpt", args.teacher_dir]
    plans = {"alone": [*student, "--epoch_size", str(args.epochs)],
             "distilled": [*student, *teach, "--epoch_size", str(args.epochs)]}
    rows = [["teacher " + TEACHER_MODEL, f"{results['teacher']['best_top1']:.4f}"]]
    for name in args.runs:
        results[name] = finetune(args, os.path.join(args.out, name), plans[name])
        rows.append([f"student {args.student}: {name}", f"{results[name]['best_top1']:.4f}"])
    common.print_table(["run", "best top1"], rows)
    timing = epoch_timing(args) if args.epoch_repeats else None
    print(f"load average at end {[round(x, 2) for x in os.getloadavg()]}")
    default_out = os.path.join(common.ROOT, "runs", "bench_distill")
    name = "bench_distill" + ("" if os.path.abspath(args.out) == default_out else "_" + os.path.basename(args.out))
    common.write_json(name, {**header, "args": vars(args), "results": results, "epoch_timing": timing})


def epoch_timing(args):
    """Seconds per training epoch of the student without a teacher, with it online and with cache_teacher, on
    fixed views, round-robin in this process; returns {variant: {"epochs": [...], "median": s}} (and the cache's
    one pass)."""
    fixed = dict(model=args.student, ckpt_path="", pretrained=False, scale=[1, 1], ratio=[1, 1], hflip=0,
                 color_jitter=0)
    teach = dict(teacher_model=TEACHER_MODEL, teacher_ckpt=args.teacher_dir)
    variants = {"no teacher": {}, "teacher online": teach, "cache_teacher": dict(teach, cache_teacher=True)}
    runs = {name: common.SuiteRun(common.suite_config(args.config, **fixed, **extra))
            for name, extra in variants.items()}
    for run in runs.values():
        run.epoch(1)  # compiles
    timing = {name: {"epochs": []} for name in runs}
    for repeat in range(args.epoch_repeats):
        for name, run in runs.items():
            timing[name]["epochs"].append(run.epoch(2 + repeat)[0])
    base = common.median(timing["no teacher"]["epochs"])
    rows = []
    for name, run in runs.items():
        timing[name]["median"] = common.median(timing[name]["epochs"])
        low, high = common.spread(timing[name]["epochs"])
        rows.append([name, timing[name]["median"], f"{low:.1f}-{high:.1f}", f"{timing[name]['median'] / base:.2f}x"])
    timing["cache_teacher"]["cache_pass"] = runs["cache_teacher"].teacher.cache_seconds
    common.print_table(["student epoch (fixed views)", "median s", "range s", "vs no teacher"], rows)
    print(f"cache_teacher's one pass over the training views: {timing['cache_teacher']['cache_pass']:.1f} s")
    return timing


if __name__ == "__main__":
    main()
