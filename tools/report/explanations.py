"""Grad-CAM pictures: the files of ``predict.py --explain`` (each image with its heatmap over it, and every
heatmap as numbers, ``heatmaps.npz``, 0-255 per pixel of the network's input, to draw again or measure), and
validate.py's figure of where the model looked in its worst errors."""
import os

from tools.core.fileio import atomic_folder
from tools.evaluate.grad_cam import overlay
from tools.report.evaluation import GRID_CELL_INCHES, RIGHT, WRONG, save_figure

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

HEATMAPS_FILE = "heatmaps.npz"


def picture_name(index, path):
    """``00003_<file stem>.png``: in input order, and two inputs of one name stay two pictures."""
    return f"{index:05d}_{os.path.splitext(os.path.basename(path))[0]}.png"


def write_explanations(folder, paths, classes, class_names, pairs):
    """Write ``folder`` whole (it replaces an earlier one only when complete): a picture per ``(view,
    heatmap)`` of ``pairs`` and ``heatmaps.npz`` (``files``, ``classes`` explained, ``heatmaps`` N x H x W, uint8)."""
    heatmaps = []
    with atomic_folder(folder) as tmp:
        for index, (path, (view, heatmap)) in enumerate(zip(paths, pairs)):
            Image.fromarray(overlay(view, heatmap)).save(os.path.join(tmp, picture_name(index, path)))
            heatmaps.append(np.rint(heatmap * 255).astype(np.uint8))
        np.savez_compressed(os.path.join(tmp, HEATMAPS_FILE), files=np.asarray(paths),
                            classes=np.asarray([class_names[c] for c in classes]), heatmaps=np.stack(heatmaps))
    return len(heatmaps)


def plot_error_heatmaps(rows, png_path):
    """One row per image: where the model looked for the class it answered, and for the true class.
    ``rows``: ``(file, predicted name, its probability, true name, its probability, view, (heatmap of the
    predicted class, heatmap of the true class))``."""
    fig, axes = plt.subplots(len(rows), 2, figsize=(2 * GRID_CELL_INCHES, len(rows) * GRID_CELL_INCHES),
                             squeeze=False)
    for (path, pred, pred_prob, true, true_prob, view, heatmaps), pair in zip(rows, axes):
        for ax, heatmap, title, colour in zip(pair, heatmaps, (f"answered {pred} ({pred_prob:.2f})",
                                                                f"true {true} ({true_prob:.2f})"), (WRONG, RIGHT)):
            ax.imshow(overlay(view, heatmap))
            ax.set_title(title, color=colour, fontsize=9)
            ax.axis("off")
        pair[0].text(0, -0.25, os.path.basename(path), transform=pair[0].transAxes, fontsize=7)
    fig.tight_layout()
    save_figure(fig, png_path)
