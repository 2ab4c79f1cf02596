"""One training batch drawn as the model sees it (after augmentation, normalisation undone), with class names:
``tools/show_batch.py``'s figure."""
import os

from tools.core.errors import UsageError
from tools.core.fileio import check_output_file

import numpy as np

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
    """A grid of the images titled with their names, written to ``png_path``."""
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


def sample_batch(cfg, split, n):
    """``(images (N, H, W, 3) uint8, titles, paths of the split)``: one training batch of ``n`` from ``split``."""
    from tools.core import runtime
    from tools.core.config import update
    from tools.datasets.loader import build_loader, open_split

    update(cfg, "show_batch.py, which draws in one process", distribute=False)
    runtime.setup(cfg)
    if cfg.aug_splits:
        print("note: aug_splits is not drawn; showing the samples without the split augmentation")
        update(cfg, "show_batch.py, which does not draw aug_splits", aug_splits=0)
    data = open_split(cfg, split, training=True)
    loader = build_loader(cfg, data, len(data.class_names), training=True, batch_size=min(n, data.size))
    images, labels = next(loader.create_tuple_iterator(output_numpy=True, num_epochs=1))
    return to_pixels(images, cfg.mean, cfg.std), titles(labels, data.class_names), data.paths
