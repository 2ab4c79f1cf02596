"""Parameter groups: the lr / weight decay each parameter actually gets from the optimizer."""
from tools.core.errors import UsageError
from tools.models.blocks import feature_blocks
from tools.train.param_groups import build_param_groups, format_group_table

import mindspore as ms
import numpy as np
import pytest
from mindcv.models import create_model
from mindcv.optim import create_optimizer
from mindcv.scheduler import create_scheduler
from mindspore import Tensor, nn

LR_MULT = {"classifier": 1.2, "features.13": 1.05, "features.14": 1.1, "features.15": 1.15}
PEAK = 2  # the step with the peak lr (0.01) of the schedule below


@pytest.fixture(scope="module")
def lrs():
    return [float(v) for v in create_scheduler(steps_per_epoch=2, scheduler="cosine_decay", lr=0.01, min_lr=0.0001,
                                               warmup_epochs=1, decay_epochs=2, num_epochs=3)]


@pytest.fixture
def no_jit(monkeypatch):
    """Run the optimizers' ``@jit`` construct eagerly: same ops, no ~15 s graph compile per optimizer."""
    monkeypatch.setenv("MS_JIT", "0")


def mobilenet():
    """A fresh MobileNetV3 for tests that train or freeze; the others share ``net``."""
    return create_model("mobilenet_v3_small_100", num_classes=4)


@pytest.fixture(scope="module")
def net():
    """A MobileNetV3 that tests only read (building groups and optimizers does not change it)."""
    return mobilenet()


@pytest.fixture(scope="module")
def convnext():
    return create_model("convnext_tiny", num_classes=4)


def expected_mult(name):
    """LR_MULT by hand: longest matching prefix at a '.' boundary."""
    for prefix in sorted(LR_MULT, key=len, reverse=True):
        if name == prefix or name.startswith(prefix + "."):
            return LR_MULT[prefix]
    return 1.0


def index_of(optimizer):
    return {p.name: i for i, p in enumerate(optimizer.parameters)}


def applied_lrs(optimizer, step):
    """{name: lr} that ``optimizer.construct`` uses at ``step``: its ``get_lr()`` at that global_step."""
    optimizer.global_step.set_data(Tensor([step], ms.int32))
    return {p.name: float(lr.asnumpy()) for p, lr in zip(optimizer.parameters, optimizer.get_lr())}


def applied_weight_decay(optimizer):
    """{name: weight decay the optimizer applies}, from its per-parameter decay flags and values."""
    rates = optimizer.weight_decay if optimizer.is_group else [optimizer.weight_decay] * len(optimizer.parameters)
    return {p.name: float(wd.asnumpy()) if flag else 0.0
            for p, flag, wd in zip(optimizer.parameters, optimizer.decay_flags, rates)}


def group_mults(groups, lrs):
    """{name: lr multiplier} read off the groups' lr lists (checking each list is mult * lrs)."""
    mults = {}
    for group in groups[:-1]:
        mult = group["lr"][PEAK] / lrs[PEAK]
        assert np.allclose(group["lr"], mult * np.array(lrs))
        mults.update({p.name: mult for p in group["params"]})
    return mults


def batch():
    rng = np.random.default_rng(0)
    return Tensor(rng.random((2, 3, 32, 32), dtype=np.float32)), Tensor(np.array([0, 1], np.int32))


def train_one_step(network, optimizer, step=PEAK):
    """One TrainOneStepCell step at schedule step ``step``; returns the loss."""
    optimizer.global_step.set_data(Tensor([step], ms.int32))
    loss_fn = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    train = nn.TrainOneStepCell(nn.WithLossCell(network, loss_fn), optimizer).set_train()
    return float(train(*batch()).asnumpy())


@pytest.mark.parametrize("opt", ["adamw", "momentum"])
def test_optimizer_applies_the_group_lr_at_every_step(opt, net, lrs):
    groups, _ = build_param_groups(net, lrs, 1e-4, "auto", lr_mult=LR_MULT)
    optimizer = create_optimizer(groups, opt=opt, lr=lrs, weight_decay=1e-4, weight_decay_filter="auto")
    names = [p.name for p in net.trainable_params()]
    probes = {prefix: next(n for n in names if n.startswith(prefix + "."))
              for prefix in ("features.0", "features.1", "features.13", "features.14", "features.15", "classifier")}
    assert {prefix: expected_mult(name) for prefix, name in probes.items()} == {
        "features.0": 1.0, "features.1": 1.0, "features.13": 1.05, "features.14": 1.1, "features.15": 1.15,
        "classifier": 1.2}
    for name in names:  # the whole schedule, as stored in the optimizer
        param = optimizer.parameters[index_of(optimizer)[name]]
        assert np.allclose(optimizer.get_lr_parameter(param).asnumpy(), expected_mult(name) * np.array(lrs))
    for k, lr in enumerate(lrs):  # evaluated by the optimizer at every step
        applied = applied_lrs(optimizer, k)
        assert {n: applied[n] for n in probes.values()} == pytest.approx(
            {n: expected_mult(n) * lr for n in probes.values()}), k


@pytest.mark.parametrize("jit", [True, False], ids=["graph", "eager"])
def test_one_sgd_step_moves_each_group_by_its_lr(jit, lrs, monkeypatch):
    """A real step, compiled as in training (~15 s) and eager: delta == -mult * lr * grad."""
    if not jit:
        monkeypatch.setenv("MS_JIT", "0")
    net = mobilenet()
    net.set_train()  # batch statistics: an eval-mode fresh net has vanishing gradients in early layers
    groups, _ = build_param_groups(net, lrs, 0.0, "disable", lr_mult=LR_MULT)
    optimizer = create_optimizer(groups, opt="sgd", lr=lrs, momentum=0.0, weight_decay=0.0,
                                 weight_decay_filter="auto")
    loss_fn = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    grad_fn = ms.value_and_grad(lambda x, y: loss_fn(net(x), y), None, optimizer.parameters)
    _, grads = grad_fn(*batch())
    before = {p.name: p.asnumpy().copy() for p in optimizer.parameters}
    optimizer.global_step.set_data(Tensor([PEAK], ms.int32))
    optimizer(grads)
    for name in ("features.0.weight", "features.13.layers.0.weight", "classifier.3.weight"):
        i = index_of(optimizer)[name]
        delta = optimizer.parameters[i].asnumpy() - before[name]
        expected = -expected_mult(name) * lrs[PEAK] * grads[i].asnumpy()
        assert np.abs(expected).max() > 0
        assert np.allclose(delta, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max()), name


def test_mindspore_decays_gamma_and_beta_inside_a_group(net):
    """Why the filter is ours: MindSpore's 'beta'/'gamma' rule only holds for ungrouped parameters."""
    params = net.trainable_params()
    plain = nn.Momentum(params, learning_rate=0.1, momentum=0.9, weight_decay=1e-4)
    grouped = nn.Momentum([{"params": params, "weight_decay": 1e-4}], learning_rate=0.1, momentum=0.9)
    assert applied_weight_decay(plain)["features.1.gamma"] == 0.0
    assert applied_weight_decay(grouped)["features.1.gamma"] == pytest.approx(1e-4)


SPARED = {
    "disable": lambda name: False,
    "auto": lambda name: "gamma" in name or "beta" in name,
    "norm_and_bias": lambda name: name.rsplit(".", 1)[-1] in ("gamma", "beta", "bias"),
}


@pytest.mark.parametrize("weight_decay_filter", sorted(SPARED))
def test_weight_decay_filter_works_with_groups(weight_decay_filter, lrs, no_jit):
    net = mobilenet()
    groups, _ = build_param_groups(net, lrs, 1e-4, weight_decay_filter, lr_mult=LR_MULT)
    optimizer = create_optimizer(groups, opt="momentum", lr=lrs, weight_decay=1e-4, weight_decay_filter="auto")
    got = applied_weight_decay(optimizer)
    spared = SPARED[weight_decay_filter]
    assert got == {n: (0.0 if spared(n) else pytest.approx(1e-4)) for n in got}
    assert got["classifier.3.bias"] == (0.0 if weight_decay_filter == "norm_and_bias" else pytest.approx(1e-4))
    before = net.classifier[3].weight.asnumpy().copy()
    assert np.isfinite(train_one_step(net, optimizer))
    assert not np.allclose(net.classifier[3].weight.asnumpy(), before)


def test_weight_decay_is_applied_only_where_the_filter_says(lrs, no_jit):
    """A real SGD step: decayed weights move by -lr * (grad + wd * w), spared ones by -lr * grad."""
    net = mobilenet()
    net.set_train()
    wd = 0.5
    groups, _ = build_param_groups(net, lrs, wd, "auto")
    optimizer = nn.SGD(groups, learning_rate=lrs, momentum=0.0)  # a MindSpore optimizer directly
    loss_fn = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    _, grads = ms.value_and_grad(lambda x, y: loss_fn(net(x), y), None, optimizer.parameters)(*batch())
    before = {p.name: p.asnumpy().copy() for p in optimizer.parameters}
    optimizer.global_step.set_data(Tensor([PEAK], ms.int32))
    optimizer(grads)
    for name, decay in (("features.0.weight", wd), ("features.1.gamma", 0.0), ("features.1.beta", 0.0)):
        i = index_of(optimizer)[name]
        expected = -lrs[PEAK] * (grads[i].asnumpy() + decay * before[name])
        delta = optimizer.parameters[i].asnumpy() - before[name]
        assert np.allclose(delta, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max()), name


def test_norm_and_bias_uses_norm_layers_not_name_fragments(convnext, lrs):
    """ConvNeXt's layer scale ``gamma_`` is not a norm parameter: decayed by norm_and_bias, not by auto."""
    rates = {}
    for weight_decay_filter in ("auto", "norm_and_bias"):
        groups, _ = build_param_groups(convnext, lrs, 1e-4, weight_decay_filter)
        rates[weight_decay_filter] = {p.name: g["weight_decay"] for g in groups[:-1] for p in g["params"]}
    assert rates["auto"]["feature.1.0.gamma_"] == 0.0
    assert rates["norm_and_bias"]["feature.1.0.gamma_"] == 1e-4
    for name in ("feature.1.0.norm.gamma", "norm.beta", "feature.1.0.dwconv.bias"):
        assert rates["norm_and_bias"][name] == 0.0
    assert rates["norm_and_bias"]["feature.1.0.dwconv.weight"] == 1e-4


def test_bogus_weight_decay_filter_is_a_usage_error(net, lrs):
    with pytest.raises(UsageError, match="weight_decay_filter.*'norm'"):
        build_param_groups(net, lrs, 1e-4, "norm")


def test_longest_prefix_wins_at_dot_boundaries(net, lrs):
    groups, _ = build_param_groups(net, lrs, 1e-4, lr_mult={"features": 0.5, "features.1": 2.0},
                                   wd_mult={"features.1": 3.0, "classifier.3": 0.0})
    mults = group_mults(groups, lrs)
    rates = {p.name: g["weight_decay"] for g in groups[:-1] for p in g["params"]}
    assert mults["features.1.gamma"] == 2.0
    assert mults["features.13.layers.0.weight"] == 0.5
    assert mults["features.10.layers.0.weight"] == 0.5
    assert mults["classifier.3.weight"] == 1.0
    assert rates["features.1.gamma"] == pytest.approx(3e-4)
    assert rates["features.13.layers.0.weight"] == pytest.approx(1e-4)
    assert rates["classifier.3.weight"] == 0.0
    assert rates["classifier.0.weight"] == pytest.approx(1e-4)


def test_wd_mult_reaches_the_optimizer(net, lrs):
    groups, _ = build_param_groups(net, lrs, 1e-4, "auto", wd_mult={"classifier": 2.0, "features.3": 0.5})
    got = applied_weight_decay(create_optimizer(groups, opt="adamw", lr=lrs, weight_decay=1e-4,
                                                weight_decay_filter="auto"))
    assert got["classifier.0.weight"] == pytest.approx(2e-4)
    assert got["classifier.3.bias"] == pytest.approx(2e-4)
    assert got["features.0.weight"] == pytest.approx(1e-4)
    assert all(v == pytest.approx(0.5e-4) for n, v in got.items() if n.startswith("features.3.") and "gamma" not in n
               and "beta" not in n)


def test_layer_decay_on_mobilenet(net, lrs):
    groups, rows = build_param_groups(net, lrs, 1e-4, layer_decay=0.5, lr_mult={"classifier.3": 2.0})
    mults = group_mults(groups, lrs)
    n = len(feature_blocks(net))
    assert n == 17
    for name, mult in mults.items():
        if name.startswith("features."):
            assert mult == pytest.approx(0.5 ** (n - int(name.split(".")[1]))), name
    assert mults["classifier.0.weight"] == 1.0
    assert mults["classifier.3.weight"] == 2.0  # combined with lr_mult
    assert "layer_decay block 0 (features.0)" in [r["pattern"] for r in rows]
    optimizer = create_optimizer(groups, opt="momentum", lr=lrs, weight_decay=1e-4, weight_decay_filter="auto")
    applied = applied_lrs(optimizer, PEAK)
    assert applied["features.15.gamma"] == pytest.approx(0.5 ** 2 * lrs[PEAK])
    assert applied["features.0.weight"] == pytest.approx(0.5 ** 17 * lrs[PEAK])
    assert applied["classifier.3.weight"] == pytest.approx(2.0 * lrs[PEAK])


def test_layer_decay_block_mapping_resnet_and_convnext(convnext, lrs):
    expected = {
        "conv1.weight": 0.5 ** 5, "bn1.gamma": 0.5 ** 5, "layer1.0.conv1.weight": 0.5 ** 4, "layer4.1.bn2.beta": 0.5,
        "classifier.weight": 1.0}
    groups, _ = build_param_groups(create_model("resnet18", num_classes=4), lrs, 1e-4, layer_decay=0.5)
    assert {name: group_mults(groups, lrs)[name] for name in expected} == pytest.approx(expected)
    expected = {"feature.0.0.weight": 0.5 ** 8, "feature.7.2.pwconv2.bias": 0.5, "norm.gamma": 1.0,
                "classifier.weight": 1.0}
    groups, _ = build_param_groups(convnext, lrs, 1e-4, layer_decay=0.5)
    assert {name: group_mults(groups, lrs)[name] for name in expected} == pytest.approx(expected)


@pytest.mark.parametrize("layer_decay", [0, -0.5, 1.5, "0.5"])
def test_layer_decay_out_of_range(layer_decay, net, lrs):
    with pytest.raises(UsageError, match="layer_decay"):
        build_param_groups(net, lrs, 1e-4, layer_decay=layer_decay)


def test_layer_decay_needs_feature_blocks(lrs):
    with pytest.raises(UsageError, match="no feature blocks"):
        build_param_groups(nn.Dense(3, 2), lrs, 1e-4, layer_decay=0.5)


def test_frozen_params_are_left_out(lrs, no_jit):
    net = mobilenet()
    frozen = [p for p in net.trainable_params() if p.name.startswith("features.0.")]
    for p in frozen:
        p.requires_grad = False
    groups, rows = build_param_groups(net, lrs, 1e-4, "auto", lr_mult=LR_MULT)
    grouped = [p.name for g in groups[:-1] for p in g["params"]]
    assert sorted(grouped) == sorted(p.name for p in net.trainable_params())
    assert not any(n.startswith("features.0.") for n in grouped)
    assert [p.name for p in groups[-1]["order_params"]] == [p.name for p in net.trainable_params()]
    assert sum(r["tensors"] for r in rows) == len(grouped)
    optimizer = create_optimizer(groups, opt="momentum", lr=lrs, weight_decay=1e-4, weight_decay_filter="auto")
    before = {p.name: p.asnumpy().copy() for p in (frozen[0], net.classifier[3].weight)}
    assert np.isfinite(train_one_step(net, optimizer))
    assert np.array_equal(frozen[0].asnumpy(), before[frozen[0].name])
    assert not np.allclose(net.classifier[3].weight.asnumpy(), before["classifier.3.weight"])
    with pytest.raises(UsageError, match="'features.0'"):
        build_param_groups(net, lrs, 1e-4, lr_mult={"features.0": 2.0})


@pytest.mark.parametrize("kwargs, needle", [
    ({"lr_mult": {"features.99": 2.0}}, "lr_mult: prefix 'features.99'"),
    ({"lr_mult": {"classifier.": 2.0}}, "'classifier.'"),
    ({"wd_mult": {"head": 0.0}}, "wd_mult: prefix 'head'"),
    ({"lr_mult": {"classifier": -1.0}}, "lr_mult: factor for 'classifier'"),
    ({"wd_mult": {"classifier": "big"}}, "wd_mult: factor for 'classifier'"),
])
def test_bad_multipliers_are_usage_errors(kwargs, needle, net, lrs):
    with pytest.raises(UsageError) as err:
        build_param_groups(net, lrs, 1e-4, **kwargs)
    assert needle in str(err.value)


def test_group_table(net, lrs):
    groups, rows = build_param_groups(net, lrs, 1e-4, "norm_and_bias", lr_mult=LR_MULT)
    assert len(rows) == len(groups) - 1
    assert sum(r["tensors"] for r in rows) == len(net.trainable_params())
    assert sum(r["params"] for r in rows) == sum(p.size for p in net.trainable_params())
    assert {r["pattern"] for r in rows} == {"(rest)", "classifier", "features.13", "features.14", "features.15"}
    head = next(r for r in rows if r["pattern"] == "classifier" and r["weight_decay"] > 0)
    assert (head["tensors"], head["params"], head["lr_mult"]) == (2, 576 * 1024 + 1024 * 4, 1.2)
    table = format_group_table(rows).splitlines()
    assert table[0].split() == ["pattern", "tensors", "params", "lr_mult", "weight_decay"]
    assert len(table) == len(rows) + 1
    for row, line in zip(rows, table[1:]):
        assert line.startswith(row["pattern"]) and line.split()[-3:] == [
            f"{row['params']:,}", f"{row['lr_mult']:.4g}", f"{row['weight_decay']:g}"]
    assert len({len(line) for line in table}) == 1  # aligned


def test_a_shared_schedule_is_passed_once_and_trains_bitwise_as_per_group_copies(lrs, no_jit):
    """Groups whose lr lists all equal the schedule lose their own lr (MindSpore keeps one schedule, which
    compiles faster); training is bitwise the same, weight decay per group is kept, and any lr_mult keeps them."""
    from tools.train.optimizer import shared_schedule

    finals, decays = {}, {}
    for shared in (False, True):
        ms.set_seed(0)
        network = mobilenet()
        network.set_train()
        groups, _ = build_param_groups(network, lrs, 1e-2, "auto")
        assert len(groups) == 3 and all(g["lr"] == lrs for g in groups[:-1])  # decayed / spared, + order_params
        if shared:
            groups = shared_schedule(groups, lrs)
            assert all("lr" not in g for g in groups)
        optimizer = create_optimizer(groups, opt="adamw", lr=lrs, weight_decay=1e-2, weight_decay_filter="auto")
        assert optimizer.is_group_lr is not shared
        decays[shared] = applied_weight_decay(optimizer)
        for step in range(3):
            train_one_step(network, optimizer, step)
        finals[shared] = {p.name: p.asnumpy() for p in network.get_parameters()}
    assert decays[True] == decays[False]
    assert sorted(set(decays[True].values())) == [0.0, pytest.approx(1e-2, rel=1e-6)]  # spared and decayed groups
    assert finals[True].keys() == finals[False].keys()
    for name, value in finals[False].items():
        assert np.array_equal(finals[True][name], value), name
    net = mobilenet()
    groups, _ = build_param_groups(net, lrs, 1e-2, "auto", lr_mult=LR_MULT)
    assert shared_schedule(groups, lrs) is groups
