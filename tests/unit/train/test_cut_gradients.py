"""The gradient cut at the frozen boundary (tools.train.freeze.cut_gradients, tools.models.stages): the same loss
and bitwise the same gradients for every trainable tensor as the plain frozen network, in train
mode, with every parameter name unchanged; and the split that the linear probe uses on pooled features."""
from tools.models.blocks import feature_blocks
from tools.models.stages import split_forward
from tools.train.freeze import apply_freezing, cut_gradients

import mindspore as ms
import numpy as np
import pytest
from mindcv.models import create_model
from mindcv.optim import create_optimizer
from mindcv.utils.train_step import TrainStep
from mindspore import Tensor, nn

CASES = [  # (mode, model, freezing): one family each in PyNative, one in GRAPH
    (1, "mobilenet_v3_small_100", dict(freeze_layers=4)),
    (1, "resnet18", dict(freeze_layers=1)),  # the stem alone: conv1, bn1, relu, max_pool
    (1, "resnest14", dict(freeze_layers=2)),
    (1, "convnextv2_atto", dict(freeze_backbone=True)),  # ConvNeXt's pool + final norm after the cut
    (0, "resnet18", dict(freeze_layers=2)),
]


def frozen_network(name, freezing):
    """``name`` with 5 classes, frozen, trainable weights set at random (non-trivial gradients), in
    train mode with dropout off (the same forward pass twice)."""
    ms.set_seed(0)
    network = create_model(name, num_classes=5)
    report = apply_freezing(network, **freezing)
    rng = np.random.default_rng(0)
    for param in network.trainable_params():
        param.set_data(Tensor(rng.normal(0, 0.05, param.shape).astype(np.float32)))
    network.set_train(True)
    for _, cell in network.cells_and_names():
        if "Dropout" in type(cell).__name__:
            cell.set_train(False)
    return network, report


def loss_and_grads(network, weights, images, labels):
    loss, grads = ms.value_and_grad(nn.WithLossCell(network, nn.CrossEntropyLoss()), None, weights)(images, labels)
    return float(loss.asnumpy()), [g.asnumpy() for g in grads]


def names(cell):
    """The names that checkpoints and load_param_into_net use."""
    return [param.name for param in cell.get_parameters()]


def train_step_names(cell, weights):
    optimizer = create_optimizer(weights, opt="adam", lr=0.01)
    step = TrainStep(nn.WithLossCell(cell, nn.CrossEntropyLoss()), optimizer, scale_sense=Tensor(1.0, ms.float32))
    return names(step)


@pytest.mark.parametrize("mode,model,freezing", CASES, indirect=["mode"],
                         ids=[f"{'graph' if m == 0 else 'pynative'}-{n}-{next(iter(f))}" for m, n, f in CASES])
def test_cut_gives_same_loss_and_gradients_and_names(mode, model, freezing):
    network, report = frozen_network(model, freezing)
    assert report.frozen_blocks == (len(feature_blocks(network)) if freezing.get("freeze_backbone")
                                    else freezing["freeze_layers"])
    cut = cut_gradients(network, report.frozen_blocks)
    assert cut is not network
    assert names(cut) == names(network)
    weights = network.trainable_params()
    assert train_step_names(cut, weights) == train_step_names(network, weights)  # checkpoints, resume

    rng = np.random.default_rng(1)
    images = Tensor(rng.standard_normal((2, 3, 32, 32)).astype(np.float32))
    labels = Tensor(np.array([1, 3], np.int32))
    plain_loss, plain = loss_and_grads(network, weights, images, labels)
    cut_loss, grads = loss_and_grads(cut, weights, images, labels)
    assert cut_loss == plain_loss
    assert len(grads) == len(plain) == len(weights)
    for param, a, b in zip(weights, plain, grads):
        assert np.array_equal(a, b), param.name
    assert max(float(np.abs(g).max()) for g in plain) > 0


@pytest.mark.parametrize("model", ["mobilenet_v3_small_100", "convnextv2_atto"])
def test_head_on_pooled_features_gives_the_network_output(model):
    """What tools.train.techniques.linear_probe trains on: the back part applied to features pooled to (N, C, 1, 1)."""
    network = create_model(model, num_classes=5)
    network.set_train(False)
    front, back = split_forward(network, len(feature_blocks(network)))
    images = Tensor(np.random.default_rng(2).standard_normal((2, 3, 32, 32)).astype(np.float32))
    pooled = front(images).mean((2, 3), keep_dims=True)
    assert pooled.shape[2:] == (1, 1)
    np.testing.assert_array_equal(back(pooled).asnumpy(), network(images).asnumpy())


def test_no_cut_without_frozen_blocks_or_for_unknown_families(capsys):
    network = create_model("mobilenet_v3_small_100", num_classes=5)
    report = apply_freezing(network, freeze_patterns=[r"^features\.0\."])
    assert report.frozen_blocks == 0
    assert cut_gradients(network, report.frozen_blocks) is network

    other = create_model("mobilenet_v1_025", num_classes=5)  # blocks, but a forward pass not in tools.models.stages
    report = apply_freezing(other, freeze_layers=3)
    assert cut_gradients(other, report.frozen_blocks) is other
    notes = [line for line in capsys.readouterr().out.splitlines() if line]
    assert len(notes) == 1 and "MobileNetV1" in notes[0], notes
