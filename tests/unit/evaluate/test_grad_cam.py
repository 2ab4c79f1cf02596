"""tools/evaluate/grad_cam.py: the gradient-weighted map is what Grad-CAM defines, in GRAPH and PyNative mode."""
from tools.core.errors import UsageError
from tools.evaluate.grad_cam import GradCam, network_view, overlay

import mindspore as ms
import numpy as np
import pytest
from mindcv.models import create_model
from mindspore import Tensor, nn
from PIL import Image


@pytest.fixture(params=[ms.GRAPH_MODE, ms.PYNATIVE_MODE], ids=["graph", "pynative"])
def mode(request):
    before = ms.get_context("mode")
    ms.set_context(mode=request.param)
    yield request.param
    ms.set_context(mode=before)


def test_with_a_pooled_linear_head_it_is_the_class_activation_map(mode):
    """MobileNetV2 ends in global average pooling and one Dense layer, so the class score's gradient with respect
    to each channel of the last feature map is W[class, channel] / positions everywhere: Grad-CAM there is the
    class activation map relu(sum_k W[c, k] A_k), computed here with numpy from the feature map and the weights."""
    ms.set_seed(3)
    network = create_model("mobilenet_v2_100", num_classes=4)
    network.set_train(False)
    images = np.random.default_rng(0).normal(size=(3, 3, 96, 96)).astype(np.float32)
    classes = [2, 0, 3]
    cam = GradCam(network, "mobilenet_v2_100")
    maps = cam.heatmaps(images, classes, 4)
    assert maps.shape == (3, 96, 96) and maps.min() >= 0 and np.allclose(maps.max(axis=(1, 2)), 1)

    features = cam.front(Tensor(images)).asnumpy()                            # (3, 1280, 3, 3)
    weight = network.classifier[1].weight.asnumpy()                             # (4, 1280): dropout, then Dense
    expected = np.maximum(np.einsum("nk,nkhw->nhw", weight[classes], features), 0)
    for heatmap, small in zip(maps, expected):
        resized = np.asarray(Image.fromarray(small.astype(np.float32), mode="F").resize((96, 96), Image.BILINEAR))
        np.testing.assert_allclose(heatmap, resized / resized.max(), atol=1e-4)
    other = cam.heatmaps(images, [1, 1, 1], 4)                                 # another class, another map
    assert np.abs(other - maps).max() > 0.05


def test_a_model_of_no_known_family_is_one_line():
    with pytest.raises(UsageError, match="--explain needs a model of a family the suite knows.*vgg11 is not one"):
        GradCam(nn.SequentialCell([nn.Dense(2, 2)]), "vgg11")


def test_the_view_is_the_image_before_normalisation_and_the_overlay_keeps_it_visible():
    mean, std = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
    picture = np.random.default_rng(1).integers(0, 256, size=(8, 8, 3)).astype(np.uint8)
    normalised = ((picture - np.asarray(mean)) / np.asarray(std)).transpose(2, 0, 1).astype(np.float32)
    np.testing.assert_array_equal(network_view(normalised, mean, std), picture)
    hot = overlay(picture, np.ones((8, 8)))                                  # jet at 1 is dark red
    assert hot.dtype == np.uint8 and hot.shape == picture.shape
    assert (hot[..., 0].astype(int) >= (0.55 * picture[..., 0]).astype(int)).all()
