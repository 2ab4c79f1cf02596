"""Grad-CAM (Selvaraju et al., 2017): where in the image the network found the class it answered.

The feature map is the output of the network's last feature block, which the model families table knows
(:func:`tools.models.stages.split_forward`); the class score's gradient with respect to it, averaged over
its positions, weighs its channels; their weighted sum through a ReLU, resized to the network's input and
scaled to [0, 1], is the heatmap. The network runs in inference mode (BatchNorm statistics, no dropout), as
for the prediction it explains.
"""
from tools.core.errors import UsageError
from tools.evaluate.inference import batches
from tools.models.blocks import feature_blocks
from tools.models.stages import split_forward

import mindspore as ms
import numpy as np
from matplotlib import colormaps
from mindspore import Tensor, nn
from PIL import Image

OVERLAY_ALPHA = 0.45  # heatmap over the image: enough to see both


class _ClassScore(nn.Cell):
    """The chosen class's logit summed over the batch, from the last feature map."""

    def __init__(self, back):
        super().__init__(auto_prefix=False)
        self.back = back

    def construct(self, features, onehot):
        return (self.back(features) * onehot).sum()


def last_feature_map(network, model_name):
    """``(front, back)``: the network up to its last feature map, and from there to the logits; a model of a
    family the suite does not know is refused in one line."""
    split = split_forward(network, len(feature_blocks(network)))
    if split is None:
        raise UsageError(f"--explain needs a model of a family the suite knows (MobileNetV2/V3, ResNet, "
                         f"ResNeSt, ConvNeXt: tools/models/families.py); {model_name} is not one")
    return split


class GradCam:
    """Heatmaps of a checkpoint's network, for batches of evaluation-preprocessed images."""

    def __init__(self, network, model_name):
        self.network, (self.front, back) = network, last_feature_map(network, model_name)
        self.gradient = ms.grad(_ClassScore(back), grad_position=0)

    def heatmaps(self, images, classes, num_classes):
        """``(N, H, W)`` heatmaps in [0, 1] of ``images`` (N, C, H, W) for ``classes`` (one per image)."""
        self.network.set_train(False)
        features = self.front(Tensor(images))
        onehot = Tensor(np.eye(num_classes, dtype=np.float32)[np.asarray(classes)])
        grads = self.gradient(features, onehot).asnumpy()
        weights = grads.mean(axis=(2, 3), keepdims=True)
        cams = np.maximum((weights * features.asnumpy()).sum(axis=1), 0)
        return np.stack([_fit(cam, images.shape[2:]) for cam in cams])


def _fit(cam, size):
    """``cam`` resized (bilinear, pixel centres aligned) to ``size`` = (H, W) and scaled to [0, 1]."""
    height, width = size
    resized = np.asarray(Image.fromarray(cam.astype(np.float32), mode="F").resize((width, height), Image.BILINEAR))
    top = resized.max()
    return resized / top if top > 0 else resized


def network_view(image, mean, std):
    """The RGB picture the network saw (``image``: one preprocessed ``(C, H, W)`` input), as uint8 HWC."""
    pixels = image.transpose(1, 2, 0) * np.asarray(std, np.float32) + np.asarray(mean, np.float32)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def overlay(view, heatmap):
    """``heatmap`` coloured (jet: red where the class was found) over ``view``, as uint8 RGB."""
    colours = colormaps["jet"](heatmap)[..., :3] * 255
    return np.clip((1 - OVERLAY_ALPHA) * view + OVERLAY_ALPHA * colours, 0, 255).astype(np.uint8)


def explainable(network):
    """Whether Grad-CAM finds ``network``'s last feature map (its family is in the families table)."""
    return split_forward(network, len(feature_blocks(network))) is not None


def explain_loader(network, model_name, loader, classes, num_classes, mean, std):
    """``(view, heatmap)`` of every image of ``loader`` in order, for its entry of ``classes``."""
    for view, (heatmap,) in explain_classes(network, model_name, loader, [[c] for c in classes], num_classes,
                                            mean, std):
        yield view, heatmap


def explain_classes(network, model_name, loader, classes, num_classes, mean, std):
    """``(view, heatmaps)`` of every image of ``loader`` in order: one heatmap per class of its entry of
    ``classes`` (e.g. the predicted and the true class), computed a batch at a time."""
    cam, start = GradCam(network, model_name), 0
    for images, _ in batches(loader, output_numpy=True):
        wanted = np.asarray(classes[start:start + len(images)])
        start += len(images)
        maps = np.stack([cam.heatmaps(images, wanted[:, k], num_classes) for k in range(wanted.shape[1])], axis=1)
        for image, heatmaps in zip(images, maps):
            yield network_view(image, mean, std), heatmaps
