"""Walk MindCV's own config files through finetune.py unchanged: a dry run of each, then optionally one
tiny training epoch, and report which pass and, for the others, the one-line error.

    .venv/bin/python bench/walk_mindcv_configs.py [--configs DIR] [--train | --train_only] [--timeout 900] [--shard K/N]
        [--order_from EARLIER.json ...] [--continue_from EARLIER_TRAIN.json ...]

``--configs`` defaults to the 12 files in tests/mindcv_configs; MindCV's whole folder (179 files) comes
from a clone of mindspore-lab/mindcv: ``git -C mindcv archive v0.3.0 configs | tar -x -C /tmp/mindcv``,
then ``--configs /tmp/mindcv/configs``. The dry run is the issue's command on a 100-class Aircraft-layout
folder (600 train + 100 val images of 32 px, so MindCV's batch sizes up to 512 make a step):

    finetune.py --config FILE --data_dir D --num_classes 100 --pretrained False --dry_run True

``--train`` then trains each config that passed for one epoch of 8 images (``--batch_size 4 --epoch_size 1
--val_while_train False``; everything else as the file says, at its own image size), which is where models
that do not fit the machine stop; ``--train_only`` skips the dry runs (training makes the same checks). Results:
a Markdown table and runs/bench/walk_mindcv_configs[_train][_K_of_N].json, rewritten after every config;
``--continue_from`` that file (of the same shard) goes on where a stopped walk ended.
"""
import argparse
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import common

TRAIN_FLAGS = ["--batch_size", "4", "--epoch_size", "1", "--val_while_train", "False", "--warmup_epochs", "0"]


def finetune_argv(config, data_dir, out_dir, flags):
    return ["--config", config, "--data_dir", data_dir, "--num_classes", "100", "--pretrained", "False",
            "--ckpt_save_dir", out_dir, *flags]


def run(config, data_dir, flags, timeout, out_dir):
    """finetune.py as a user runs it, in its own process."""
    cmd = [sys.executable, os.path.join(common.ROOT, "finetune.py"), *finetune_argv(config, data_dir, out_dir, flags)]
    begin = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=dict(os.environ, GLOG_v="3"))
    except subprocess.TimeoutExpired:
        return {"code": None, "seconds": timeout, "message": f"timeout after {timeout} s", "traceback": False}
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    if proc.returncode < 0:  # no line of its own; the kernel's OOM killer sends SIGKILL
        number = -proc.returncode
        name = signal.Signals(number).name if number in signal.valid_signals() else f"signal {number}"
        message = f"killed by {name}" + (" (the machine's memory ran out?)" if number == signal.SIGKILL else "")
    else:
        message = errors[-1] if proc.returncode else ""
    return {"code": proc.returncode, "seconds": round(time.perf_counter() - begin, 1),
            "message": message, "traceback": "Traceback" in proc.stderr}


def child(data_dir, out_dir, configs):
    """Dry runs of ``configs`` in this one process (MindSpore imported once), one JSON line each."""
    import contextlib
    import io

    import finetune
    from tools.core.errors import DataError, UsageError

    for config in configs:
        begin = time.perf_counter()
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                code, message = finetune.main(finetune_argv(config, data_dir, out_dir, ["--dry_run", "True"])), ""
        except (UsageError, DataError) as err:
            code, message = err.exit_code, f"error: {err}"
        except Exception as err:
            code, message = "traceback", f"{type(err).__name__}: {err}".splitlines()[0]
        print(json.dumps({"config": config, "code": code, "message": message,
                          "seconds": round(time.perf_counter() - begin, 1)}), flush=True)


def dry_runs(paths, data_dir, out_dir, timeout, chunk=12):
    """``{path: result}``: chunks of configs in child processes; a config whose child died runs alone."""
    results = {}
    for start in range(0, len(paths), chunk):
        part = paths[start:start + chunk]
        try:
            proc = subprocess.run([sys.executable, __file__, "--child", data_dir, out_dir, *part], capture_output=True,
                                  text=True, env=dict(os.environ, GLOG_v="3"), timeout=timeout * len(part))
            output = proc.stdout
        except subprocess.TimeoutExpired as err:
            output = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
        for line in output.splitlines():
            if line.startswith("{"):
                row = json.loads(line)
                results[row.pop("config")] = dict(row, traceback=row["code"] == "traceback")
        for path in part:
            if path not in results:  # its child process died on it (or before it): alone, as a user runs it
                results[path] = run(path, data_dir, ["--dry_run", "True"], timeout, out_dir)
            print(f"{path}: dry run {_status(results[path])}", flush=True)
    return results


def quickest_first(paths, root, earlier):
    """``paths`` ordered by their dry run's seconds in the ``earlier`` result files (unknown ones last)."""
    seconds = {}
    for name in earlier:
        with open(name, encoding="utf-8") as f:
            for row in json.load(f)["results"]:
                seconds[os.path.join(root, row["config"])] = row["dry_run"]["seconds"]
    return sorted(paths, key=lambda path: seconds.get(path, float("inf")))


def earlier_rows(names):
    """The result rows of earlier walks' files ``names`` (a walk stopped half-way goes on from them)."""
    rows = []
    for name in names:
        with open(name, encoding="utf-8") as f:
            rows += json.load(f)["results"]
    return rows


def _skipped(res):
    return res["message"].startswith("not run")


def _status(res):
    if _skipped(res):
        return "not run"
    return "ok" if res["code"] == 0 else f"exit {res['code']}: {res['message'][:160]}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=os.path.join(common.ROOT, "tests", "mindcv_configs"))
    parser.add_argument("--train", action="store_true", help="also train one tiny epoch per config")
    parser.add_argument("--train_only", action="store_true",
                        help="train every config without the dry run first (training makes the same checks)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per command")
    parser.add_argument("--shard", default="1/1", help="K/N: walk every N-th file from the K-th (run N at once)")
    parser.add_argument("--order_from", nargs="+", metavar="JSON",
                        help="earlier walks' results: walk the configs with the quickest dry run first, so a "
                             "walk stopped half-way has covered the most files")
    parser.add_argument("--continue_from", nargs="+", metavar="JSON", default=[],
                        help="earlier walks' results: keep their rows and walk only the configs they lack")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], args.child[1], args.child[2:])
    header = common.report_header()
    k, n = (int(v) for v in args.shard.split("/"))
    paths = sorted(glob.glob(os.path.join(args.configs, "**", "*.yaml"), recursive=True))
    if args.order_from:
        paths = quickest_first(paths, args.configs, args.order_from)
    paths = paths[k - 1::n]
    name = "walk_mindcv_configs" + ("_train" if args.train_only else "") + (f"_{k}_of_{n}" if n > 1 else "")
    train = args.train or args.train_only
    results = earlier_rows(args.continue_from)
    done = {os.path.join(args.configs, row["config"]) for row in results}
    paths = [path for path in paths if path not in done]
    with tempfile.TemporaryDirectory() as scratch:
        data = common.make_aircraft(os.path.join(scratch, "data"), 600, 100, size=(32, 32),
                                    split_names=("train", "val"))
        tiny = common.make_aircraft(os.path.join(scratch, "tiny"), 8, 4, size=(32, 32), split_names=("train", "val"))
        passed_dry = {"code": 0, "message": "not run (--train_only)", "seconds": 0, "traceback": False}
        dry = ({path: passed_dry for path in paths} if args.train_only
               else dry_runs(paths, data, os.path.join(scratch, "never"), args.timeout))
        for path in paths:
            result = {"config": os.path.relpath(path, args.configs), "dry_run": dry[path]}
            if train and dry[path]["code"] == 0:
                out_dir = os.path.join(scratch, result["config"].replace("/", "_"))
                result["train"] = run(path, tiny, TRAIN_FLAGS, args.timeout, out_dir)
                shutil.rmtree(out_dir, ignore_errors=True)  # big models' checkpoints: 19 GB after 30 files
                print(f"{result['config']}: train {_status(result['train'])}", flush=True)
            results.append(result)
            # written after every config, so a walk stopped half-way keeps what it measured
            common.write_json(name, {**header, "configs": args.configs, "train": train, "partial": True,
                                     "results": results})
    rows = [[r["config"], _status(r["dry_run"]), _status(r["train"]) if "train" in r else "-"] for r in results]
    common.print_table(["config", "dry run", "one tiny epoch"], rows)
    dry_walked = [r for r in results if not _skipped(r["dry_run"])]
    passed = sum(r["dry_run"]["code"] == 0 for r in dry_walked)
    trained = sum(r.get("train", {}).get("code") == 0 for r in results)
    tracebacks = sum(r["dry_run"].get("traceback", False) or r.get("train", {}).get("traceback", False)
                     for r in results)
    print((f"{passed}/{len(dry_walked)} dry runs pass, " if dry_walked else "dry runs not run, ")
          + (f"{trained}/{len(results)} trained one epoch, " if train else "")
          + f"{tracebacks} ended in a traceback")
    common.write_json(name, {**header, "configs": args.configs, "train": train, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
