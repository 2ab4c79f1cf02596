"""Knowledge distillation on the demo data: a small student fine-tuned alone vs distilled from a fine-tuned
teacher at the same epochs, and the time per epoch with the teacher online vs ``cache_teacher``.

    .venv/bin/python bench/bench_distill.py [--config configs/demo.yaml] [--teacher_dir runs/bench_distill/teacher]
        [--student mobilenet_v3_small_100] [--epochs 8] [--timing_epochs 3] [--out runs/bench_distill]

The teacher is the largest model the suite has ImageNet weights for offline: MobileNetV2-1.0 from the converted
Keras weights (README "Pretrained weights offline"), fine-tuned by ``finetune.py --config CONFIG`` into
``--teacher_dir`` (skipped when that folder already holds a finished run). No ImageNet weights exist offline for
a smaller model, so the student (MobileNetV3-small by default) starts from random initialisation in both of its
runs, with the config's recipe otherwise (augmentation, label smoothing, schedule, epochs):

* ``alone``: the student fine-tuned on the labels;
* ``distilled``: the same with ``--teacher_model mobilenet_v2_100 --teacher_ckpt <teacher_dir>`` (the defaults
  distill_alpha 0.5, distill_temperature 4 unless ``--flags`` says otherwise);
* ``online_fixed`` / ``cached_fixed``: ``--timing_epochs`` epochs of the distilled student on fixed views
  (scale and ratio [1, 1], no flip), teacher online vs ``cache_teacher: True``, for the time per epoch.

Every run is a finetune.py process; Top-1 is the best validation Top-1 (summary.json), time per epoch the mean
without the first, compiling epoch (summary.json's ``sec_per_epoch``); the cache's one pass is printed by the run
and reported. Prints a Markdown table and writes runs/bench/bench_distill.json.
"""
import argparse
import json
import os
import re
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
    parser.add_argument("--timing_epochs", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(common.ROOT, "runs", "bench_distill"))
    parser.add_argument("--runs", nargs="+", default=["alone", "distilled", "online_fixed", "cached_fixed"])
    parser.add_argument("--flags", nargs=argparse.REMAINDER, default=[], help="more finetune.py flags for the student")
    return parser.parse_args(argv)


def finetune(args, out, flags):
    """One finetune.py run into ``out`` (a new folder); returns (summary.json, stdout, wall seconds)."""
    cmd = [sys.executable, os.path.join(common.ROOT, "finetune.py"), "--config", args.config, "--ckpt_save_dir", out,
           "--overwrite", "True", *flags]
    print("$ " + " ".join(os.path.relpath(c, common.ROOT) if c.startswith(common.ROOT) else c for c in cmd[1:]),
          flush=True)
    begin = time.time()
    proc = subprocess.run(cmd, cwd=common.ROOT, env=dict(os.environ, GLOG_v="3"), capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"finetune.py failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    with open(os.path.join(out, "summary.json"), encoding="utf-8") as f:
        return json.load(f), proc.stdout, time.time() - begin


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    header = common.report_header()
    results = {}
    if not os.path.isfile(os.path.join(args.teacher_dir, "summary.json")):
        results["teacher"] = finetune(args, args.teacher_dir, [])[0]
    else:
        with open(os.path.join(args.teacher_dir, "summary.json"), encoding="utf-8") as f:
            results["teacher"] = json.load(f)
    student = ["--model", args.student, "--ckpt_path", "", "--pretrained", "False", *args.flags]
    teach = ["--teacher_model", TEACHER_MODEL, "--teacher_ckpt", args.teacher_dir]
    plans = {"alone": [*student, "--epoch_size", str(args.epochs)],
             "distilled": [*student, *teach, "--epoch_size", str(args.epochs)],
             "online_fixed": [*student, *teach, *FIXED_VIEWS, "--epoch_size", str(args.timing_epochs)],
             "cached_fixed": [*student, *teach, *FIXED_VIEWS, "--cache_teacher", "True",
                              "--epoch_size", str(args.timing_epochs)]}
    rows = [["teacher " + TEACHER_MODEL, results["teacher"]["best_top1"], results["teacher"]["sec_per_epoch"], "-"]]
    for name in args.runs:
        summary, stdout, wall = finetune(args, os.path.join(args.out, name), plans[name])
        cache = re.search(r"cache_teacher: \d+ training views through the teacher once in ([\d.]+)s", stdout)
        summary.update(wall_seconds=wall, cache_seconds=float(cache.group(1)) if cache else None)
        results[name] = summary
        rows.append([f"student {args.student}: {name}", summary["best_top1"], summary["sec_per_epoch"],
                     common.fmt(summary["cache_seconds"])])
    common.print_table(["run", "best top1", "sec/epoch (without the first)", "cache pass s"], rows)
    print(f"load average at end {[round(x, 2) for x in os.getloadavg()]}")
    common.write_json("bench_distill", {**header, "args": vars(args), "results": results})


if __name__ == "__main__":
    main()
