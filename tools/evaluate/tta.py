"""Test-time augmentation: several views of each evaluation image through the same network.

``hflip`` adds the horizontally mirrored image. The views are run by the ordinary evaluation
path (:func:`tools.evaluate.inference.predict_logits`), so every image is still seen exactly once per view.
"""
from tools.core.config import choice
from tools.evaluate.inference import predict_logits

import numpy as np
from mindspore import Tensor

TTA_MODES = ("none", "hflip")


tta_mode = choice(*TTA_MODES)


class FlipViews:
    """Calls ``network`` on the batch and on its mirror image (NCHW, width flipped); returns both
    outputs side by side, ``(N, 2C)``. Works for a Cell and for an exported MindIR (GraphCell)."""

    def __init__(self, network):
        self.network = network

    @property
    def training(self):
        return getattr(self.network, "training", False)

    def set_train(self, mode=True):
        self.network.set_train(mode)

    def __call__(self, images):
        flipped = Tensor(np.ascontiguousarray(images.asnumpy()[..., ::-1]))
        outputs = [self.network(x) for x in (images, flipped)]
        outputs = [out[0] if isinstance(out, (tuple, list)) else out for out in outputs]
        return Tensor(np.concatenate([out.asnumpy() for out in outputs], axis=1))


def view_logits(network, loader, batch_size, mode):
    """``(views (V, N, C), labels (N,))``: the logits of every view of every image, in loader order."""
    if mode == "none":
        logits, labels = predict_logits(network, loader, batch_size)
        return logits[None], labels
    logits, labels = predict_logits(FlipViews(network), loader, batch_size)
    return np.stack(np.split(logits, 2, axis=1)), labels
