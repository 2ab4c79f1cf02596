"""Time to first training step (graph compilation) in GRAPH vs PyNative mode, demo config; optionally
MindCV's own train step in GRAPH mode beside the suite's.

    .venv/bin/python bench/bench_compile.py [--repeats 3] [--steps 5] [--variants GRAPH PYNATIVE MINDCV]

Each measurement is a fresh child process (compilation caches are per process), variants alternating. The
child builds finetune.py's objects for configs/demo.yaml (mobilenet_v2_100, 96 px, batch 32, the converted
Keras checkpoint when present, tf_same_padding as configured) or, for ``MINDCV``, what MindCV's
``create_trainer`` builds at loss scale 1 for the same model, loss, schedule and optimizer
(``create_model/loss/scheduler/optimizer`` + ``nn.TrainOneStepCell``), and reports, from one in-memory batch
of the training shape:

* ``setup``: data + loaders + network + freezing + loss + schedule + optimizer + train step (seconds);
* ``first step``: the first call of the train step (GRAPH: includes compilation);
* ``steady step``: median of the next ``--steps`` steps.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import common

MODES = {"GRAPH": 0, "PYNATIVE": 1, "MINDCV": 0}


def child(variant, steps):
    from tools.core import runtime
    from tools.core.config import update

    t0 = time.perf_counter()
    cfg = common.suite_config(common.DEMO_CONFIG, mode=MODES[variant], log_interval=100000)
    if not os.path.isfile(os.path.join(common.ROOT, cfg.ckpt_path)):
        update(cfg, "bench_compile (the demo checkpoint is not here)", ckpt_path="")
    common.quiet(runtime.setup, cfg)
    run = common.SuiteRun(cfg)
    step = run.train_step
    if variant == "MINDCV":
        from bench_train import mindcv_trainer

        step = mindcv_trainer(cfg, run.num_classes, run.steps)[1].train_network
        step.set_train()
    batch = common.fake_batch(cfg, run.num_classes)
    setup = time.perf_counter() - t0
    first = common.time_steps(step, batch, 1)
    times = [common.time_steps(step, batch, 1) for _ in range(steps)]
    print(json.dumps({"variant": variant, "setup_seconds": setup, "first_step_seconds": first,
                      "steady_step_seconds": common.median(times), "batch_size": cfg.batch_size}))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--variants", nargs="+", default=["GRAPH", "PYNATIVE"], choices=list(MODES),
                        help="MINDCV: MindCV's own train step (GRAPH) for the same recipe, beside the suite's")
    args = parser.parse_args()
    header = common.report_header()
    out = {**header, "modes": {name: {"runs": []} for name in args.variants}}
    for r in range(args.repeats):
        for name in args.variants:
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", name, str(args.steps)],
                                  capture_output=True, text=True, env=dict(os.environ, GLOG_v="3"), cwd=common.ROOT)
            lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
            if not lines:
                raise SystemExit(f"child failed: {proc.stderr[-800:]}")
            out["modes"][name]["runs"].append(json.loads(lines[-1]))
        print(f"  repeat {r + 1}/{args.repeats}: " + ", ".join(
            f"{n} first step {m['runs'][-1]['first_step_seconds']:.1f}s" for n, m in out["modes"].items()), flush=True)
    rows = []
    for name, m in out["modes"].items():
        for key in ("setup_seconds", "first_step_seconds", "steady_step_seconds"):
            m["median_" + key] = common.median([run[key] for run in m["runs"]])
        m["compile_overhead_seconds"] = m["median_first_step_seconds"] - m["median_steady_step_seconds"]
        rows.append([name, m["median_setup_seconds"], m["median_first_step_seconds"],
                     m["median_steady_step_seconds"] * 1000, m["compile_overhead_seconds"],
                     m["median_setup_seconds"] + m["median_first_step_seconds"]])
    print()
    common.print_table(["variant", "setup s", "first step s", "steady step ms", "first - steady s",
                        "time to first step s"], rows)
    modes = out["modes"]
    if "GRAPH" in modes and "PYNATIVE" in modes:
        g, p = modes["GRAPH"], modes["PYNATIVE"]
        out["break_even_steps"] = ((g["median_first_step_seconds"] - p["median_first_step_seconds"])
                                   / (p["median_steady_step_seconds"] - g["median_steady_step_seconds"])
                                   if p["median_steady_step_seconds"] > g["median_steady_step_seconds"] else None)
        if out["break_even_steps"]:
            print(f"GRAPH pays off after {out['break_even_steps']:.0f} steps")
    if "GRAPH" in modes and "MINDCV" in modes:
        out["first_step_suite_vs_mindcv"] = (modes["GRAPH"]["median_first_step_seconds"]
                                             / modes["MINDCV"]["median_first_step_seconds"])
        print(f"first step (compilation), suite / MindCV: {out['first_step_suite_vs_mindcv']:.2f}x")
    common.write_json("compile", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
