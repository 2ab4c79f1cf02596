"""Where the model looks (``predict.py --explain True``): Grad-CAM (Selvaraju et al., 2017) on the output of the
last feature stage, found through the model families table (``tools.models.stages.split_forward`` after every
feature block: MobileNetV2/V3, ConvNeXt, ResNet, ResNeSt).

For an image and a class k, with A the last stage's maps (C, h, w) and y_k the class's logit computed from them
by the rest of the network: the weight of channel c is the mean over the map of dy_k / dA_c, and the heatmap is
``relu(sum_c weight_c * A_c)``, scaled to a maximum of 1. The class explained is the predicted one. Heatmaps are
drawn over the image as the model saw it (resized and centre-cropped by the evaluation preprocessing).
"""
import math
import os

from tools.core.errors import UsageError
from tools.evaluate.inference import batches
from tools.models.blocks import feature_blocks
from tools.models.stages import split_forward
from tools.report import evaluation as reports

import matplotlib.pyplot as plt
import mindspore as ms
import numpy as np
from PIL import Image

OVERLAY_ALPHA = 0.45
OVERLAY_INCHES = 3.0


def last_stage_split(network, model):
    """``(front, back)``: the network up to its last feature stage, and the rest; a model of no listed family
    is a one-line error."""
    split = split_forward(network, len(feature_blocks(network)))
    if split is None:
        raise UsageError(f"--explain needs a model of a family in tools/models/families.py (MobileNetV2/V3, "
                         f"ConvNeXt, ResNet, ResNeSt); {model} is not one")
    return split


def heatmaps(network, model, loader, classes):
    """``(N, h, w)`` Grad-CAM heatmaps of the images of ``loader`` (in order) for ``classes`` (N,)."""
    front, back = last_stage_split(network, model)
    network.set_train(False)

    def class_score(maps, onehot):
        return (back(maps) * onehot).sum()

    gradient = ms.grad(class_score, grad_position=0)
    found, start = [], 0
    for images, _ in batches(loader, output_numpy=True):
        maps = front(ms.Tensor(images))
        onehot = np.eye(back(maps).shape[1], dtype=np.float32)[classes[start:start + len(images)]]
        grads = gradient(maps, ms.Tensor(onehot)).asnumpy()
        maps = maps.asnumpy()
        cams = np.maximum((grads.mean(axis=(2, 3), keepdims=True) * maps).sum(axis=1), 0)
        peak = cams.max(axis=(1, 2), keepdims=True)
        found.append(np.where(peak > 0, cams / np.maximum(peak, 1e-12), 0))
        start += len(images)
    return np.concatenate(found)


def model_view(path, cfg):
    """The image as the evaluation preprocessing crops it (shorter side to ``image_resize / crop_pct``, centre
    crop of ``image_resize``), as RGB uint8."""
    size = cfg.image_resize
    with Image.open(path) as image:
        image = image.convert("RGB")
        shorter = int(math.floor(size / cfg.crop_pct))
        scale = shorter / min(image.size)
        image = image.resize((max(shorter, round(image.width * scale)), max(shorter, round(image.height * scale))),
                             Image.BILINEAR)
        left, top = (image.width - size) // 2, (image.height - size) // 2
        return np.asarray(image.crop((left, top, left + size, top + size)))


def upsample(cam, size):
    """A heatmap resized (bilinear) to ``size`` x ``size`` pixels, values in [0, 1]."""
    return np.asarray(Image.fromarray(np.float32(cam), mode="F").resize((size, size), Image.BILINEAR)).clip(0, 1)


def write_overlays(folder, paths, cams, titles, cfg):
    """One PNG per image in ``folder``: the model's view with its heatmap over it, titled ``titles[i]``;
    ``heatmaps.npz`` beside them (``files``, ``heatmaps`` at the stage's resolution). Returns the PNG paths."""
    os.makedirs(folder, exist_ok=True)
    written = []
    for index, (path, cam, title) in enumerate(zip(paths, cams, titles)):
        view = model_view(path, cfg)
        fig, ax = plt.subplots(figsize=(OVERLAY_INCHES, OVERLAY_INCHES))
        ax.imshow(view)
        ax.imshow(upsample(cam, view.shape[0]), cmap="jet", alpha=OVERLAY_ALPHA, vmin=0, vmax=1)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
        fig.tight_layout()
        out = os.path.join(folder, f"{index:05d}_{os.path.splitext(os.path.basename(path))[0]}.png")
        reports.save_figure(fig, out)
        written.append(out)
    np.savez(os.path.join(folder, "heatmaps.npz"), files=np.array(paths), heatmaps=cams)
    return written
