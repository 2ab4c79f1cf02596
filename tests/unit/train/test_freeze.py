"""Freezing: which parameters freeze, and that frozen weights and BatchNorm statistics stay bitwise
unchanged while training with MindCV's TrainStep in GRAPH and PYNATIVE mode."""
import re

from tools.core.errors import UsageError
from tools.models.norm_layers import BATCH_NORMS
from tools.train.freeze import apply_freezing

import mindspore as ms
import numpy as np
import pytest
from mindcv.models import create_model
from mindcv.optim import create_optimizer
from mindcv.utils.train_step import TrainStep
from mindspore import Tensor, nn

MODEL = "mobilenet_v3_small_100"
STATISTICS = ("moving_mean", "moving_variance")
FIRST_7 = re.compile(r"features\.[0-6]\.")


@pytest.fixture
def net():
    return create_model(MODEL, num_classes=4)


def snapshot(network):
    return {p.name: p.asnumpy().copy() for p in network.get_parameters()}


def train(network, steps=2):
    """A few steps as tools.train.trainer.build_train_step runs them: WithLossCell + TrainStep + Adam."""
    optimizer = create_optimizer(network.trainable_params(), opt="adam", lr=0.01)
    step = TrainStep(nn.WithLossCell(network, nn.CrossEntropyLoss()), optimizer,
                     scale_sense=Tensor(1.0, ms.float32)).set_train()
    rng = np.random.default_rng(0)
    for _ in range(steps):
        images = Tensor(rng.standard_normal((4, 3, 32, 32)).astype(np.float32))
        labels = Tensor(rng.integers(0, 4, 4).astype(np.int32))
        step(images, labels)


def unchanged(before, after):
    return {name for name in after if np.array_equal(before[name], after[name])}


def is_statistic(name):
    return name.endswith(STATISTICS)


@pytest.mark.parametrize("mode", [0, 1], indirect=True, ids=["graph", "pynative"])
def test_freeze_first_7_blocks_keeps_weights_and_bn_stats_bitwise(net, mode):
    report = apply_freezing(net, freeze_layers=7)
    frozen = {p.name for p in net.get_parameters() if not p.requires_grad and not is_statistic(p.name)}
    assert frozen == {n for n, _ in net.parameters_and_names() if FIRST_7.match(n) and not is_statistic(n)}
    late = [p for p in net.get_parameters() if re.match(r"features\.1\d\.", p.name) and not is_statistic(p.name)]
    assert late and all(p.requires_grad for p in late)  # features.1 never matches features.10 ... features.15
    assert report.frozen_bn_layers == sum(1 for n, c in net.cells_and_names()
                                          if isinstance(c, BATCH_NORMS) and FIRST_7.match(n + "."))

    before = snapshot(net)
    train(net)
    same = unchanged(before, snapshot(net))
    frozen_block_params = {n for n in before if FIRST_7.match(n)}
    assert any(is_statistic(n) for n in frozen_block_params)
    assert frozen_block_params <= same
    trainable = {p.name for p in net.trainable_params()}
    assert not trainable & same
    assert {n for n in before if is_statistic(n) and not FIRST_7.match(n)}.isdisjoint(same)  # trained BN moves


@pytest.mark.parametrize("mode", [0], indirect=True, ids=["graph"])
def test_freeze_backbone_trains_the_whole_head_only(net, mode):
    report = apply_freezing(net, freeze_backbone=True)
    trainable = {p.name for p in net.trainable_params()}
    assert trainable == {"classifier.0.weight", "classifier.0.bias", "classifier.3.weight", "classifier.3.bias"}
    assert report.frozen_bn_layers == sum(1 for _, c in net.cells_and_names() if isinstance(c, BATCH_NORMS))

    before = snapshot(net)
    train(net)
    same = unchanged(before, snapshot(net))
    features = {n for n in before if n.startswith("features.")}
    assert features <= same
    assert not trainable & same


@pytest.mark.parametrize("mode", [1], indirect=True, ids=["pynative"])
def test_freeze_bn_stats_false_lets_frozen_bn_statistics_move(net, mode):
    report = apply_freezing(net, freeze_layers=7, freeze_bn_stats=False)
    assert report.frozen_bn_layers == 0
    before = snapshot(net)
    train(net)
    same = unchanged(before, snapshot(net))
    frozen_weights = {n for n in before if FIRST_7.match(n) and not is_statistic(n)}
    frozen_statistics = {n for n in before if FIRST_7.match(n) and is_statistic(n)}
    assert frozen_weights <= same
    assert frozen_statistics and frozen_statistics.isdisjoint(same)


def test_freeze_patterns_add_to_blocks(net):
    report = apply_freezing(net, freeze_layers=1, freeze_patterns=[r"^features\.1\.", r"^classifier\.0\."])
    frozen = {p.name for p in net.get_parameters() if not p.requires_grad and not is_statistic(p.name)}
    assert frozen == {"features.0.weight", "features.1.gamma", "features.1.beta",
                      "classifier.0.weight", "classifier.0.bias"}
    assert report.frozen_bn_layers == 1 and net.features[1].use_batch_statistics is False


@pytest.mark.parametrize("pattern", ["features.(", "featurez"])
def test_bad_or_unmatched_pattern_is_a_usage_error_naming_it(net, pattern):
    with pytest.raises(UsageError, match=re.escape(pattern)):
        apply_freezing(net, freeze_patterns=[r"^classifier\.", pattern])
    assert all(p.requires_grad for p in net.trainable_params()) and len(net.trainable_params()) > 4


@pytest.mark.parametrize("layers", [-1, 18])
def test_freeze_layers_out_of_range_names_the_block_count(net, layers):
    with pytest.raises(UsageError, match=r"between 0 and 17"):
        apply_freezing(net, freeze_layers=layers)


def test_nothing_requested_changes_nothing(net):
    trainable = [p.name for p in net.trainable_params()]
    report = apply_freezing(net)
    assert [p.name for p in net.trainable_params()] == trainable
    assert report.frozen_params == report.frozen_tensors == report.frozen_bn_layers == 0
    assert all(c.use_batch_statistics is None for _, c in net.cells_and_names() if isinstance(c, BATCH_NORMS))


def test_report_counts_match_parameter_sizes(net):
    report = apply_freezing(net, freeze_layers=7, freeze_patterns=[r"^classifier\.0\."])
    weights = [p for p in net.get_parameters() if not is_statistic(p.name)]
    trainable = [p for p in weights if p.requires_grad]
    frozen = [p for p in weights if not p.requires_grad]
    assert (report.trainable_params, report.trainable_tensors) == (sum(p.size for p in trainable), len(trainable))
    assert (report.frozen_params, report.frozen_tensors) == (sum(p.size for p in frozen), len(frozen))
    assert report.summary() == (f"trainable {report.trainable_params:,} params ({len(trainable)} tensors), "
                                f"frozen {report.frozen_params:,} params ({len(frozen)} tensors); "
                                f"{report.frozen_bn_layers} BatchNorm layers in inference mode")


@pytest.mark.parametrize("model, stem", [("resnet18", r"(conv1|bn1)\."), ("convnext_tiny", r"feature\.0\.")])
def test_freeze_layers_1_freezes_the_stem_only(model, stem):
    network = create_model(model, num_classes=4)
    apply_freezing(network, freeze_layers=1)
    frozen = {p.name for p in network.get_parameters() if not p.requires_grad and not is_statistic(p.name)}
    assert frozen and frozen == {n for n, _ in network.parameters_and_names() if re.match(stem, n)
                                 and not is_statistic(n)}
