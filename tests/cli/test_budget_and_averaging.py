"""finetune.py with ``max_time`` and ``average_checkpoints`` (issue #29): a real run on the tiny data stops inside
its budget by its own rule (read back from what it recorded: summary.json, results.csv, the log), exits 0 with a
validated last epoch, a valid best checkpoint and averaged weights equal to numpy's mean of the chosen epoch
checkpoints; bad values are one line, exit 2, before anything is written."""
import json
import os

from conftest import TINY_TRAIN_ARGS, assert_one_line_error, read_csv, run_main, run_script
from tools.models.factory import read_checkpoint
from tools.train.techniques.weight_averaging import AVERAGED_EPOCHS_KEY

import numpy as np
import pytest

MODEL = "mobilenet_v3_small_100"
BUDGET = 60
# PyNative (no graph compilation: every epoch costs about the same, so the run is about the rule, not about how long
# a loaded machine takes to compile); momentum (AdamW's first PyNative step compiles for long, tests/unit/train)
FLAGS = ["--mode", 1, "--opt", "momentum", "--epoch_size", 1000, "--max_time", f"{BUDGET}s", "--val_interval", 3,
         "--average_checkpoints", 2, "--ckpt_save_policy", "top_k", "--keep_checkpoint_max", 3, "--log_interval", 100]


def tensors(path):
    return {k: v.asnumpy() for k, v in read_checkpoint(str(path)).items() if hasattr(v, "asnumpy") and v.ndim}


def test_a_run_with_a_budget_stops_inside_it_validated_with_its_best_and_averaged_checkpoints(tiny_aircraft,
                                                                                              tmp_path):
    out = tmp_path / "run"
    proc = run_script("finetune.py", "--data_dir", tiny_aircraft, *TINY_TRAIN_ARGS, *FLAGS, "--ckpt_save_dir", out)
    assert proc.returncode == 0, proc.stderr
    with open(out / "summary.json", encoding="utf-8") as f:
        summary = json.load(f)
    budget = summary["max_time"]
    last = summary["epochs_done"]
    assert budget["budget_seconds"] == BUDGET and budget["stopped_by_budget"] is True and budget["last_epoch"] == last
    assert 1 < last < 1000 and summary["early_stop"] is False                 # more than the first epoch fitted
    decision = budget["decision"]  # the rule, on the figures it used: one more epoch (+ the averaging) would not fit
    train, tail, after = decision["train_seconds"], decision["tail_seconds"], decision["kept_after_seconds"]
    assert after > 0 and decision["at_seconds"] + tail + train + tail + after > BUDGET - 0.5   # (rounded to 0.1 s)
    assert budget["spent_seconds"] <= 1.2 * BUDGET                             # generous: the README gives measured
    assert f"max_time: epoch {last} is the last (of epoch_size 1000)" in proc.stdout
    table = read_csv(out / "results.csv")
    header, rows = table[0], table[1:]
    assert len(rows) == last and rows[-1][header.index("top1")] != ""        # the last epoch is validated
    best = read_checkpoint(summary["best_checkpoint"])
    assert int(best["epoch"].asnumpy()) == summary["best_epoch"]
    averaged = summary["average_checkpoints"]
    epochs = [int(e) for e in str(read_checkpoint(str(out / f"{MODEL}_avg.ckpt"))[AVERAGED_EPOCHS_KEY]).split(",")]
    assert averaged["epochs"] == epochs and len(epochs) == 2 and averaged["metrics"]["top1"] is not None
    mean, sources = tensors(out / f"{MODEL}_avg.ckpt"), [tensors(out / f"{MODEL}-{e}.ckpt") for e in epochs]
    for name, value in mean.items():
        if not name.endswith(("moving_mean", "moving_variance")):
            np.testing.assert_allclose(value, np.mean([s[name] for s in sources], axis=0), rtol=1e-6, atol=1e-7,
                                       err_msg=name)
    assert f"{MODEL}_avg.ckpt = the mean of 2 epoch checkpoints (best by top1: epochs {epochs[0]}, {epochs[1]})" \
        in proc.stdout


@pytest.mark.parametrize("flags, needle", [
    (["--max_time=-1m"], "bad value '-1m' for 'max_time': expected a duration > 0"),
    (["--max_time", "-1m"], "argument --max_time"),                    # argparse reads -1m as a flag: still one line
    (["--max_time", "abc"], "'max_time'"), (["--max_time", "0"], "'max_time'"),
    (["--average_checkpoints", "5", "--keep_checkpoint_max", "3"], "'average_checkpoints' 5"),
    (["--average_checkpoints", "-1"], "'average_checkpoints' must be >= 0"),
])
def test_bad_budget_and_averaging_values_are_one_line_exit_2_and_write_nothing(tiny_aircraft, tmp_path, flags,
                                                                             needle):
    out = tmp_path / "run"
    proc = run_main("finetune.py", "--data_dir", tiny_aircraft, *TINY_TRAIN_ARGS, *flags, "--ckpt_save_dir", out)
    assert_one_line_error(proc, needle, code=2)
    assert not os.path.exists(out)


def test_the_dry_run_plan_names_the_validation_schedule_budget_and_averaging(tiny_aircraft, tmp_path):
    proc = run_main("finetune.py", "--data_dir", tiny_aircraft, *TINY_TRAIN_ARGS, *FLAGS, "--ckpt_save_dir",
                    tmp_path / "run", "--dry_run")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "validation: every 3 epochs and the last; early_stop_patience counts validations" in lines
    assert any(line.startswith("max_time: 1m for the training loop: the run stops before an epoch") for line in lines)
    assert f"average_checkpoints: after the last epoch, {MODEL}_avg.ckpt = the mean of the 2 best by top1 kept " \
           "epoch checkpoints, BatchNorm statistics recomputed on the training data, validated" in lines
    assert not os.path.exists(tmp_path / "run")
