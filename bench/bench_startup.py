"""Start-up: seconds from the command to the first training step, and predict.py / validate.py on one
image, cold and warm, without and with MindSpore's graph compile cache.

    .venv/bin/python bench/bench_startup.py [--repeats 1]

Each command runs as a user runs it (a new process, configs/demo.yaml in GRAPH mode on a 64-image demo
subset, random initialisation, batch 32). Per run it reports the wall time to the first progress line of
finetune.py (``epoch 1/1 step 1/``), split into imports (``python -c "import mindspore, mindcv"``, timed
alone), set-up (data check, model build, checkpoint load: first line minus the first step) and the first
step (graph compilation + one step: the line's own ``elapsed``), and the wall time of predict.py on one
image and validate.py on the 16-image test split with the last checkpoint of a run without validation
(both load it and compile the inference graph). Variants: ``nocache`` (run twice, the second with the OS
file cache warm) and
``cache`` (``MS_COMPILER_CACHE_ENABLE=1``, ``MS_COMPILER_CACHE_PATH`` a fresh folder: the first run fills
it (cold), the second reads it (warm)). Prints warm/cold ratios and the load average of every run.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import common

FIRST = re.compile(r"epoch 1/1 step 1/\d+ .* elapsed (\S+)s")


def load():
    return round(os.getloadavg()[0], 2)


def timed(cmd, env, until=None):
    """Wall seconds of ``cmd`` (to its first stdout line matching ``until``, then it is killed) and the match."""
    begin = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=common.ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    match = None
    for line in proc.stdout:
        match = until.search(line) if until else None
        if match:
            seconds = time.perf_counter() - begin
            proc.kill()
            proc.wait()
            return seconds, match
    code = proc.wait()
    if code != 0:
        raise SystemExit(f"failed ({code}): {' '.join(cmd)}")
    return time.perf_counter() - begin, match


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="warm runs per variant")
    parser.add_argument("--validate", type=int, default=1, help="0: leave validate.py out (quicker)")
    args = parser.parse_args(argv)
    header = common.report_header()
    py = sys.executable
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = common.make_demo_subset(os.path.join(tmp, "demo"), 64, 16)
        train = [py, "finetune.py", "--config", common.DEMO_CONFIG, "--data_dir", data, "--pretrained", "False",
                 "--ckpt_path", "", "--epoch_size", "1", "--log_interval", "1"]
        base = dict(os.environ, GLOG_v="3")
        imports, _ = timed([py, "-c", "import mindspore, mindcv"], base)
        print(f"imports (python -c 'import mindspore, mindcv'): {imports:.1f}s  load {load()}")
        ref = os.path.join(tmp, "ref")
        # a finished run (no validation, quicker): its checkpoint for predict/validate
        timed(train + ["--ckpt_save_dir", ref, "--val_while_train", "False"], base)
        ckpt = os.path.join(ref, "mobilenet_v2_100_last.ckpt")
        image = os.path.join(data, "images", sorted(os.listdir(os.path.join(data, "images")))[0])
        predict = [py, "predict.py", "--config", os.path.join(ref, "config.yaml"), "--ckpt_path", ckpt,
                   "--input", image, "--out_dir", os.path.join(tmp, "pred")]
        validate = [py, "validate.py", "--config", os.path.join(ref, "config.yaml"), "--ckpt_path", ckpt]
        for variant in ("nocache", "cache"):
            env = dict(base)
            if variant == "cache":
                env.update(MS_COMPILER_CACHE_ENABLE="1", MS_COMPILER_CACHE_PATH=os.path.join(tmp, "cache"))
            rows = results[variant] = []
            for run in range(1 + args.repeats):
                out = os.path.join(tmp, f"{variant}{run}")
                wall, match = timed(train + ["--ckpt_save_dir", out], env, FIRST)
                first_step = float(match.group(1))
                pred, _ = timed(predict + ["--out_dir", out + "_pred"], env)
                val, _ = timed(validate, env) if args.validate else (None, None)
                row = {"run": "cold" if run == 0 else "warm", "to_first_step": wall, "first_step": first_step,
                       "set_up": wall - first_step - imports, "predict": pred, "validate": val, "load": load()}
                rows.append(row)
                print(f"{variant:8s} {row['run']}: to first step {wall:.1f}s (imports {imports:.1f} + set-up "
                      f"{row['set_up']:.1f} + first step {first_step:.1f}); predict 1 image {pred:.1f}s; "
                      f"validate {common.fmt(val)}s  load {row['load']}")
            if variant == "cache":
                files = sum(len(f) for _, _, f in os.walk(env["MS_COMPILER_CACHE_PATH"]))
                print(f"compile cache: {files} files in MS_COMPILER_CACHE_PATH")
                results["cache_files"] = files
    for key in ("to_first_step", "first_step", "predict") + (("validate",) if args.validate else ()):
        ratios = {v: common.median([r[key] for r in results[v][1:]]) / results[v][0][key] for v in ("nocache", "cache")}
        print(f"warm/cold {key}: nocache {ratios['nocache']:.2f}, cache {ratios['cache']:.2f}")
    common.write_json("bench_startup", {**header, "imports": imports, "results": results})


if __name__ == "__main__":
    main()
