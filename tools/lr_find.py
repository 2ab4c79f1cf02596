"""The learning-rate range test: train from the configured start with an lr that grows exponentially
from ``start_lr`` to ``end_lr`` over at most ``num_steps`` steps, smooth the loss, stop when it
diverges, and suggest an lr.

    python tools/lr_find.py --config CFG [finetune flags ...] [--out DIR]

Writes ``DIR/lr_find.csv`` (step, lr, loss, smoothed_loss) and ``DIR/lr_find.png`` (smoothed loss over
lr, log scale, the suggestion marked; DIR defaults to ``<ckpt_save_dir>_lr_find``, beside the run folder,
never inside it) and prints the suggestion with the rule used: the steepest descent of the smoothed loss
over log(lr), and for comparison the lr at the smoothed minimum divided by 10.
Nothing is read from or written to ``ckpt_save_dir`` and no weights file is written (the model lives
in memory only). With ``freeze_backbone`` (and ``freeze_bn_stats``, no mixup/cutmix) it runs on
features cached once (tools/train/techniques/linear_probe.py), so it takes seconds. ``freeze_epochs`` is ignored: the
test ramps the lr of what trains after the switch.
"""
import os
import sys

if __package__ in (None, ""):  # python tools/x.py: the repository root, not tools/, on sys.path
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from tools.core.config import FLOAT, INT, STR, parse_config, update
from tools.core.errors import DataError, UsageError, run_cli
from tools.core.fileio import check_outside_data, check_writable_dir, data_folders
from tools.train.lr_finder import CSV_FILE, PNG_FILE, run_range_test, suggest, write_outputs
from tools.train.run_folder import holds_run

EXTRA = {"lr_find.py": [
    ("out", "", STR, "output folder for lr_find.csv and lr_find.png (not a run folder; default: "
                     "<ckpt_save_dir>_lr_find, beside the run folder)"),
    ("start_lr", 1e-6, FLOAT, "first lr of the ramp"),
    ("end_lr", 10.0, FLOAT, "last lr of the ramp"),
    ("num_steps", 50, INT, "at most this many steps (one batch each): 7 per decade from 1e-6 to 10"),
    ("smoothing", 0.9, FLOAT, "weight of the past in the loss's exponential moving average (0 = none)"),
    ("diverge", 4.0, FLOAT, "stop when the smoothed loss exceeds this many times its minimum"),
]}


def _check_out(cfg):
    """Resolve and check the output folder before any work: never a run folder, never inside one."""
    given = bool(cfg.out)
    if not given:  # beside the config's run folder
        run_dir = os.path.normpath(cfg.ckpt_save_dir) if cfg.ckpt_save_dir else ""
        if os.path.basename(run_dir) in ("", ".", ".."):
            raise UsageError(f"ckpt_save_dir '{cfg.ckpt_save_dir}' names no folder to put the LR finder's output "
                             "beside (<ckpt_save_dir>_lr_find): set --out DIR")
        update(cfg, "lr_find.py (beside ckpt_save_dir)", out=run_dir + "_lr_find")
    key = "out" if given else f"out (default, beside ckpt_save_dir {cfg.ckpt_save_dir})"
    check_writable_dir(cfg.out, key)
    check_outside_data(cfg.out, key, data_folders(cfg, [cfg.train_split]))  # its figure would be read as an image
    if holds_run(cfg.out):
        raise UsageError(f"'{key}' {cfg.out} holds a training run; choose another folder")
    if not 0 < cfg.start_lr < cfg.end_lr:
        raise UsageError(f"need 0 < start_lr < end_lr, got {cfg.start_lr:g} and {cfg.end_lr:g}")
    if cfg.num_steps < 5:
        raise UsageError(f"num_steps must be at least 5, got {cfg.num_steps}")
    if not 0 <= cfg.smoothing < 1:
        raise UsageError(f"smoothing must be in [0, 1), got {cfg.smoothing:g}")
    if cfg.diverge <= 1:
        raise UsageError(f"diverge must be above 1, got {cfg.diverge:g}")


def main(argv=None):
    cfg = parse_config(argv, "LR range test: suggest a learning rate for a config.", extra=EXTRA)
    _check_out(cfg)
    rows, lrs = run_range_test(cfg)
    if len(rows) < 5:
        raise DataError(f"the loss diverged after {len(rows)} steps; lower start_lr")
    steepest, min_over_10 = suggest(rows)
    write_outputs(cfg.out, rows, steepest)
    stop = "diverged" if len(rows) < len(lrs) else "reached end_lr"
    print(f"lr range test: {len(rows)} steps from {rows[0][1]:.3g} to {rows[-1][1]:.3g} ({stop}); "
          f"{os.path.join(cfg.out, CSV_FILE)}, {os.path.join(cfg.out, PNG_FILE)}")
    if steepest is None:
        print(f"suggested lr: {min_over_10:.3g} (rule: lr at the smoothed loss's minimum / 10; the loss fell too "
              "briefly for a steepest-descent point)")
    else:
        print(f"suggested lr: {steepest:.3g} (rule: steepest descent of the smoothed loss over log lr); "
              f"lr at the minimum / 10: {min_over_10:.3g}")
    return 0


if __name__ == "__main__":
    run_cli(main)
