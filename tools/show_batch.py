"""Draw training samples as the model sees them: after augmentation, with their class names.

    python tools/show_batch.py --config CFG [--split trainval] [--n 16] [--out batch.png] [--KEY VALUE ...]

The samples come from the training pipeline finetune.py builds for the config (the same reader,
``create_transforms`` with the config's crop, flip, colour jitter, RandAugment, random erasing, and
mixup/cutmix), one batch of ``--n``; the normalisation (``mean``/``std``) is undone for display. A mixed
sample is titled with its two largest class weights. Every config key can be overridden as in finetune.py.
"""
import os
import sys

if __package__ in (None, ""):  # python tools/x.py: the repository root, not tools/, on sys.path
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from tools.core.config import INT, STR, parse_config
from tools.core.errors import DataError, UsageError, run_cli
from tools.core.fileio import check_output_file

import numpy as np

EXTRA = {"Preview": [
    ("split", "", STR, "split to draw from; empty = train_split"),
    ("n", 16, INT, "number of samples"),
    ("out", "batch.png", STR, "image file to write: .png, .jpg or .jpeg"),
]}
CELL_INCHES = 2.0


def to_pixels(batch, mean, std):
    """``(N, C, H, W)`` normalised floats -> ``(N, H, W, 3)`` uint8 (grey repeated to three channels)."""
    images = batch.transpose(0, 2, 3, 1) * np.asarray(std, dtype=np.float32) + np.asarray(mean, dtype=np.float32)
    images = np.clip(np.rint(images), 0, 255).astype(np.uint8)
    return np.repeat(images, 3, axis=3) if images.shape[3] == 1 else images


def titles(labels, class_names):
    """Class name per sample; mixed (one-hot weighted) labels give the two largest weights."""
    if labels.ndim == 1:
        return [class_names[int(k)] for k in labels]
    out = []
    for row in labels:
        top = np.argsort(-row)[:2]
        if row[top[1]] < 0.005:  # shows as 0.00
            out.append(class_names[top[0]])
        else:
            out.append(" + ".join(f"{class_names[k]} {row[k]:.2f}" for k in top))
    return out


def check_figure_path(path, key):
    """Refuse (UsageError, exit 2) an image file the figure cannot be written as, before the batch is drawn."""
    from tools.report.evaluation import FIGURE_FORMATS

    if os.path.splitext(path)[1].lower() not in FIGURE_FORMATS:
        raise UsageError(f"'{key}' {path}: name a {', '.join(FIGURE_FORMATS)} file")
    check_output_file(path, key)


def draw(images, names, png_path):
    import matplotlib

    matplotlib.use("Agg")
    from tools.report.evaluation import grid_shape, save_figure

    import matplotlib.pyplot as plt

    rows, cols = grid_shape(len(images))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * CELL_INCHES, rows * CELL_INCHES), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, name in zip(axes.flat, images, names):
        ax.imshow(image)
        ax.set_title(name, fontsize=8)
    fig.tight_layout()
    save_figure(fig, png_path, dpi=100)


def sample_batch(cfg):
    """``(images (N, H, W, 3) uint8, titles, paths of the split)``: one training batch of ``cfg.n``."""
    from tools.core import runtime
    from tools.datasets.loader import build_loader, open_split

    cfg.distribute = False
    runtime.setup(cfg)
    if cfg.aug_splits:
        print("note: aug_splits is not drawn; showing the samples without the split augmentation")
        cfg.aug_splits = 0
    data = open_split(cfg, cfg.split or cfg.train_split, training=True)
    loader = build_loader(cfg, data, len(data.class_names), training=True, batch_size=min(cfg.n, data.size))
    images, labels = next(loader.create_tuple_iterator(output_numpy=True, num_epochs=1))
    return to_pixels(images, cfg.mean, cfg.std), titles(labels, data.class_names), data.paths


def main(argv=None):
    cfg = parse_config(argv, "Draw training samples after augmentation.", extra=EXTRA)
    if cfg.n < 1:
        raise UsageError(f"'n' must be > 0, got {cfg.n}")
    check_figure_path(cfg.out, "out")
    images, names, _ = sample_batch(cfg)
    out_dir = os.path.dirname(os.path.abspath(cfg.out))
    try:
        os.makedirs(out_dir, exist_ok=True)
        draw(images, names, cfg.out)
    except OSError as err:
        raise DataError(f"cannot write {cfg.out}: {err.strerror or err}") from None
    print(f"{len(images)} samples of split '{cfg.split or cfg.train_split}' after augmentation written to {cfg.out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
