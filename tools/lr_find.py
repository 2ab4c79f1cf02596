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
import math
import os
import sys

if __package__ in (None, ""):  # python tools/x.py: the repository root, not tools/, on sys.path
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from tools.core.config import FLOAT, INT, STR, parse_config
from tools.core.errors import DataError, UsageError, run_cli
from tools.core.fileio import atomic_path, check_writable_dir
from tools.train.run_folder import holds_run

import numpy as np

CSV_FILE, PNG_FILE = "lr_find.csv", "lr_find.png"
EXTRA = {"lr_find.py": [
    ("out", "", STR, "output folder for lr_find.csv and lr_find.png (not a run folder; default: "
                     "<ckpt_save_dir>_lr_find, beside the run folder)"),
    ("start_lr", 1e-6, FLOAT, "first lr of the ramp"),
    ("end_lr", 10.0, FLOAT, "last lr of the ramp"),
    ("num_steps", 50, INT, "at most this many steps (one batch each): 7 per decade from 1e-6 to 10"),
    ("smoothing", 0.9, FLOAT, "weight of the past in the loss's exponential moving average (0 = none)"),
    ("diverge", 4.0, FLOAT, "stop when the smoothed loss exceeds this many times its minimum"),
]}


def ramp(start_lr, end_lr, num_steps):
    """``num_steps`` lrs from ``start_lr`` to ``end_lr``, evenly spaced on a log scale."""
    return [float(v) for v in np.geomspace(start_lr, end_lr, num_steps)]


def range_test(train_step, batch_source, lrs, smoothing=0.9, diverge=4.0, read_every=5):
    """Run ``train_step(images, labels)`` once per lr of ``lrs`` (the optimizer follows the same list, one
    value per step) on batches from ``batch_source()`` (called again when a pass ends); returns rows
    ``(step, lr, loss, smoothed)`` up to where the smoothed, bias-corrected loss first exceeds ``diverge``
    times its minimum (that step included) or a loss is not finite.

    The losses are read back every ``read_every`` steps, so that steps run back to back as in training;
    the rows are those of a step-by-step read (at most ``read_every - 1`` steps run past the stop, unread)."""
    rows, pending, average, best = [], [], 0.0, math.inf
    batches = iter(())
    for step, lr in enumerate(lrs, 1):
        batch = next(batches, None)
        if batch is None:
            batches = iter(batch_source())
            batch = next(batches, None)
            if batch is None:
                raise DataError("the training split makes no batch")
        pending.append((step, lr, train_step(*batch)))
        if len(pending) < read_every and step < len(lrs):
            continue
        for done, done_lr, loss in pending:
            loss = float(loss.asnumpy())
            if not math.isfinite(loss):
                return rows
            average = smoothing * average + (1 - smoothing) * loss
            smoothed = average / (1 - smoothing ** done)
            rows.append((done, done_lr, loss, smoothed))
            best = min(best, smoothed)
            if smoothed > diverge * best:
                return rows
        pending.clear()
    return rows


def suggest(rows, window_fraction=0.1):
    """``(steepest, min_over_10)``. ``steepest``: the lr in the middle of the window of
    ``window_fraction`` of the points over which the smoothed loss falls fastest per decade of lr,
    among windows after the first such window (the average's start-up) that end at or before the smoothed
    minimum (a window evens out batch noise); None when the minimum comes too early for one.
    ``min_over_10``: the lr at the smoothed minimum / 10."""
    log_lrs = np.log10([r[1] for r in rows])
    smoothed = np.array([r[3] for r in rows])
    low = int(np.argmin(smoothed))
    width = max(2, int(round(len(rows) * window_fraction)))
    if low < 2 * width:
        return None, float(10 ** log_lrs[low] / 10)
    starts = np.arange(width, low - width + 1)
    slopes = (smoothed[starts + width] - smoothed[starts]) / (log_lrs[starts + width] - log_lrs[starts])
    best = int(starts[np.argmin(slopes)])
    return float(10 ** ((log_lrs[best] + log_lrs[best + width]) / 2)), float(10 ** log_lrs[low] / 10)


def write_outputs(out_dir, rows, steepest):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    with atomic_path(os.path.join(out_dir, CSV_FILE)) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("step,lr,loss,smoothed_loss\n")
        f.writelines(f"{s},{lr:.6g},{loss:.6g},{sm:.6g}\n" for s, lr, loss, sm in rows)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r[1] for r in rows], [r[2] for r in rows], color="0.8", label="loss")
    ax.plot([r[1] for r in rows], [r[3] for r in rows], label="smoothed loss")
    if steepest is not None:
        ax.axvline(steepest, color="tab:red", linestyle="--", label=f"suggested lr {steepest:.2g}")
    smoothed = [r[3] for r in rows]
    ax.set_ylim(min(r[2] for r in rows) * 0.9, max(smoothed) * 1.1)  # a final spike of the raw loss is cut
    ax.set(xscale="log", xlabel="learning rate", ylabel="training loss", title="LR range test")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        with atomic_path(os.path.join(out_dir, PNG_FILE), ".tmp.png") as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(fig)


def _check_out(cfg):
    """Resolve and check the output folder before any work: never a run folder, never inside one."""
    given = bool(cfg.out)
    if not given:  # beside the config's run folder
        run_dir = os.path.normpath(cfg.ckpt_save_dir) if cfg.ckpt_save_dir else ""
        if os.path.basename(run_dir) in ("", ".", ".."):
            raise UsageError(f"ckpt_save_dir '{cfg.ckpt_save_dir}' names no folder to put the LR finder's output "
                             "beside (<ckpt_save_dir>_lr_find): set --out DIR")
        cfg.out = run_dir + "_lr_find"
    key = "out" if given else f"out (default, beside ckpt_save_dir {cfg.ckpt_save_dir})"
    check_writable_dir(cfg.out, key)
    if holds_run(cfg.out):
        raise UsageError(f"'{key}' {cfg.out} holds a training run; choose another folder")
    if not 0 < cfg.start_lr < cfg.end_lr:
        raise UsageError(f"need 0 < start_lr < end_lr, got {cfg.start_lr:g} and {cfg.end_lr:g}")
    if cfg.num_steps < 5 or not 0 <= cfg.smoothing < 1 or cfg.diverge <= 1:
        raise UsageError("need num_steps >= 5, smoothing in [0, 1) and diverge > 1")


def main(argv=None):
    from tools.core import runtime
    from tools.evaluate.inference import batches
    from tools.train.wiring import build_training

    cfg = parse_config(argv, "LR range test: suggest a learning rate for a config.", extra=EXTRA)
    _check_out(cfg)
    cfg.distribute, cfg.val_while_train, cfg.freeze_epochs, cfg.tensorboard = False, False, 0, False
    cfg.ema, cfg.gradient_accumulation_steps = False, 1
    cfg.cache_features = cfg.freeze_backbone and cfg.freeze_bn_stats and not (cfg.mixup or cfg.cutmix)
    runtime.setup(cfg)
    lrs = ramp(cfg.start_lr, cfg.end_lr, cfg.num_steps)
    run = build_training(cfg, verbose=False, schedule=lambda steps: lrs)
    run.train_step.set_train()
    rows = range_test(run.train_step, lambda: batches(run.train_loader), lrs, cfg.smoothing, cfg.diverge)
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
