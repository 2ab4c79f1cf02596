"""The learning-rate range test of ``tools/lr_find.py``: train with an lr growing exponentially, smooth the
loss, stop when it diverges, suggest an lr, and write the curve (``lr_find.csv``, ``lr_find.png``)."""
import math
import os

from tools.core.errors import DataError
from tools.core.fileio import atomic_path

import numpy as np

CSV_FILE, PNG_FILE = "lr_find.csv", "lr_find.png"


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
    """``lr_find.csv`` (the rows) and ``lr_find.png`` (loss over lr, log scale, ``steepest`` marked) in ``out_dir``."""
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


def run_range_test(cfg):
    """``(rows, lrs)`` of :func:`range_test` on the run ``cfg`` builds, trained alone: one process, no
    validation, freezing schedule, TensorBoard, EMA or accumulation; on cached features when the backbone and
    its BatchNorm statistics are frozen and no images are mixed (then it takes seconds)."""
    from tools.core import runtime
    from tools.core.config import update
    from tools.evaluate.inference import batches
    from tools.train.wiring import build_training

    cached = (cfg.freeze_backbone and cfg.freeze_bn_stats and not (cfg.mixup or cfg.cutmix or cfg.aug_repeats)
              and cfg.sampler in (None, "none"))  # what cache_features accepts, else the images train
    update(cfg, "lr_find.py, which trains alone", distribute=False, val_while_train=False, freeze_epochs=0,
           tensorboard=False, ema=False, gradient_accumulation_steps=1, cache_features=cached)
    runtime.setup(cfg)
    lrs = ramp(cfg.start_lr, cfg.end_lr, cfg.num_steps)
    run = build_training(cfg, verbose=False, schedule=lambda steps: lrs)
    run.train_step.set_train()
    return range_test(run.train_step, lambda: batches(run.train_loader), lrs, cfg.smoothing, cfg.diverge), lrs
