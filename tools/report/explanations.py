"""The files of ``predict.py --explain``: each image with its Grad-CAM heatmap over it, and every heatmap as
numbers (``heatmaps.npz``, 0-255 per pixel of the network's input) to draw again or measure."""
import os

from tools.core.fileio import atomic_folder
from tools.evaluate.grad_cam import overlay

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
