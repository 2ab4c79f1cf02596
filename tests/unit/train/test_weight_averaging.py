"""average_checkpoints (tools/train/techniques/weight_averaging.py) on a tiny conv network with two BatchNorm layers
(no script run): the averaged tensors are numpy's mean of the chosen checkpoints; the recomputed BatchNorm statistics
differ from the plain mean and equal an independent numpy forward pass; through the Trainer the K best epochs are
averaged, validated, written, the network gets its own weights back, and a resumed run writes the same file."""
import json
import os

from tools.evaluate.inference import evaluate
from tools.models.factory import read_checkpoint
from tools.train import tasks
from tools.train.checkpoints import save_weights
from tools.train.techniques.weight_averaging import (
    AVERAGED_EPOCHS_KEY,
    WeightAveraging,
    mean_weights,
    recompute_batch_norm,
)
from tools.train.trainer import Trainer

import mindspore as ms
import mindspore.dataset as ds
import numpy as np
import pytest
from mindspore import nn
from test_val_interval import StopAfter, tiny_config

CLASSES = ["a", "b", "c"]
BN_STATS = ("moving_mean", "moving_variance")


class BatchNormNet(nn.Cell):
    """BatchNorm on the input, a valid 3x3 conv, BatchNorm, ReLU, global mean, Dense: small enough to redo in numpy."""

    def __init__(self):
        super().__init__()
        self.bn0 = nn.BatchNorm2d(3)
        self.conv = nn.Conv2d(3, 4, 3, pad_mode="valid", has_bias=True)
        self.bn1 = nn.BatchNorm2d(4)
        self.head = nn.Dense(4, 3)

    def construct(self, x):
        return self.head(ms.ops.relu(self.bn1(self.conv(self.bn0(x)))).mean((2, 3)))


def images(seed, count):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, count).astype(np.int32)
    x = rng.standard_normal((count, 3, 6, 6)).astype(np.float32) * np.array([1, 2, 3], np.float32)[:, None, None]
    x += labels[:, None, None, None] * 0.7 + 1.5
    return x, labels


def loader(seed, count, shuffle=False):
    return ds.NumpySlicesDataset(images(seed, count), column_names=["image", "label"],
                                 shuffle=shuffle).batch(4, drop_remainder=True)


def tensors(path):
    return {k: v.asnumpy() for k, v in read_checkpoint(str(path)).items() if hasattr(v, "asnumpy") and v.ndim}


def batch_stats(x):
    """Per-channel mean and (biased, unbiased) variance of an NCHW batch."""
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = x.mean(axis=(0, 2, 3), dtype=np.float64)
    biased = ((x - mean[None, :, None, None]) ** 2).mean(axis=(0, 2, 3))
    return mean, biased, biased * count / (count - 1)


def numpy_stats(weights, data):
    """bn0's and bn1's statistics recomputed with numpy: each train-mode batch normalised by its own statistics,
    then the mean over batches of each batch's mean and variance (which variance MindSpore keeps: both returned)."""
    eps = 1e-5
    out = {"bn0": [], "bn1": []}
    for start in range(0, len(data), 4):
        x = data[start:start + 4].astype(np.float64)
        mean, biased, unbiased = batch_stats(x)
        out["bn0"].append((mean, biased, unbiased))
        x = (x - mean[None, :, None, None]) / np.sqrt(biased + eps)[None, :, None, None]
        x = x * weights["bn0.gamma"][None, :, None, None] + weights["bn0.beta"][None, :, None, None]
        w = weights["conv.weight"].astype(np.float64)
        patches = np.stack([x[:, :, i:i + 4, j:j + 4] for i in range(3) for j in range(3)], axis=-1)  # N,C,4,4,9
        conv = np.einsum("nchwk,ock->nohw", patches, w.reshape(4, 3, 9)) + weights["conv.bias"][None, :, None, None]
        out["bn1"].append(batch_stats(conv))
    return {name: [np.mean([batch[i] for batch in values], axis=0) for i in range(3)] for name, values in out.items()}


def randomize(net, seed):
    """Random weights and running statistics (a checkpoint of a different epoch)."""
    rng = np.random.default_rng(seed)
    for param in net.get_parameters():
        value = rng.uniform(0.5, 1.5, param.shape) if "variance" in param.name or "gamma" in param.name \
            else rng.standard_normal(param.shape)
        param.set_data(ms.Tensor(value.astype(np.float32)))


@pytest.mark.parametrize("mode", [0, 1], indirect=True)
def test_mean_is_numpys_and_batchnorm_recomputation_matches_numpy(tmp_path, mode):
    net = BatchNormNet()
    paths = []
    for seed in range(3):
        randomize(net, seed)
        paths.append(str(tmp_path / f"net-{seed}.ckpt"))
        save_weights(net, paths[-1], CLASSES)
    saved = [tensors(path) for path in paths]
    averaged = mean_weights(net, paths)
    for name, value in averaged.items():
        expected = np.mean([checkpoint[name] for checkpoint in saved], axis=0)
        np.testing.assert_allclose(value, expected, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(value, np.mean(np.stack([c[name] for c in saved]).astype(np.float64),
                                                     axis=0).astype(np.float32))
    for param in net.get_parameters():
        param.set_data(ms.Tensor(averaged[param.name]))
    layers, count = recompute_batch_norm(net, loader(5, 16))
    assert (layers, count) == (2, 4)
    expected = numpy_stats(averaged, images(5, 16)[0])
    for layer in ("bn0", "bn1"):
        mean, var = (getattr(net, layer).moving_mean.asnumpy(), getattr(net, layer).moving_variance.asnumpy())
        assert not np.allclose(mean, averaged[f"{layer}.moving_mean"], atol=1e-2)       # not the plain mean
        np.testing.assert_allclose(mean, expected[layer][0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(var, expected[layer][2], rtol=1e-4, atol=1e-5)       # unbiased, as MindSpore
    assert net.training is False


def averaging_trainer(folder, callbacks=()):
    """A Trainer over a seeded BatchNormNet keeping the 3 best epoch checkpoints by top1, averaging 2."""
    os.makedirs(folder, exist_ok=True)
    ms.set_seed(0)
    network = BatchNormNet()
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    step = nn.TrainOneStepCell(nn.WithLossCell(network, loss), nn.Momentum(network.trainable_params(), 0.05, 0.9))
    cfg = tiny_config(folder, epoch_size=4, keep_checkpoint_max=3, ckpt_save_policy="top_k")
    train = loader(1, 24, shuffle=True)
    averaging = WeightAveraging(2, network, train, loader(2, 16), 4, cfg.seed)
    trainer = Trainer(cfg, network, step.set_train(), [0.05] * 1000, CLASSES, callbacks=[*callbacks, averaging])
    return trainer, train, loader(2, 16)


def test_the_trainer_averages_the_two_best_epochs_validates_and_restores_the_network(tmp_path):
    trainer, train, val = averaging_trainer(tmp_path)
    rows = trainer.fit(train, val)
    ranked = sorted(rows, key=lambda row: (-row["top1"], -row["epoch"]))
    chosen = [row["epoch"] for row in ranked[:2]]
    params = read_checkpoint(str(tmp_path / "net_avg.ckpt"))
    assert [int(e) for e in str(params[AVERAGED_EPOCHS_KEY]).split(",")] == chosen
    averaged, sources = tensors(tmp_path / "net_avg.ckpt"), [tensors(tmp_path / f"net-{e}.ckpt") for e in chosen]
    for name, value in averaged.items():
        plain = np.mean([source[name] for source in sources], axis=0)
        if name.endswith(BN_STATS):
            assert not np.allclose(value, plain, atol=1e-4), name                     # recomputed
        else:
            np.testing.assert_allclose(value, plain, rtol=1e-6, atol=1e-7, err_msg=name)
    last = tensors(tmp_path / "net_last.ckpt")
    for param in trainer.network.get_parameters():                                    # its own weights back
        np.testing.assert_array_equal(param.asnumpy(), last[param.name])
    with open(tmp_path / "summary.json", encoding="utf-8") as f:
        facts = json.load(f)["average_checkpoints"]
    assert facts["epochs"] == chosen and facts["batchnorm_layers"] == 2 and facts["batchnorm_batches"] == 6
    fresh = BatchNormNet()
    ms.load_param_into_net(fresh, params, strict_load=False)
    result = evaluate(fresh, val, 4, tasks.SINGLE)
    assert facts["metrics"]["top1"] == pytest.approx(result["top1"]) and \
        facts["metrics"]["val_loss"] == pytest.approx(result["val_loss"], rel=1e-5)


def test_a_resumed_run_writes_the_same_averaged_checkpoint(tmp_path):
    whole, train, val = averaging_trainer(tmp_path / "whole")
    whole.fit(train, val)
    cut, train, val = averaging_trainer(tmp_path / "cut", [StopAfter(2)])
    with pytest.raises(KeyboardInterrupt):
        cut.fit(train, val)
    assert not os.path.exists(tmp_path / "cut" / "net_avg.ckpt")
    resumed, train, val = averaging_trainer(tmp_path / "cut")
    resumed.fit(train, val, resumed.resume("auto"))
    mine, theirs = tensors(tmp_path / "cut" / "net_avg.ckpt"), tensors(tmp_path / "whole" / "net_avg.ckpt")
    assert mine.keys() == theirs.keys()
    for name in mine:
        np.testing.assert_allclose(mine[name], theirs[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_batchnorm_layers_kept_by_freeze_bn_stats_are_not_recomputed():
    net = BatchNormNet()
    randomize(net, 7)
    net.bn0.use_batch_statistics = False                                # as freeze_bn_stats leaves a frozen layer
    kept = {name: getattr(net.bn0, name).asnumpy().copy() for name in BN_STATS}
    assert recompute_batch_norm(net, loader(5, 16)) == (1, 4)
    for name in BN_STATS:
        np.testing.assert_array_equal(getattr(net.bn0, name).asnumpy(), kept[name])
    net.bn1.use_batch_statistics = False
    assert recompute_batch_norm(net, loader(5, 16)) == (0, 0)          # nothing to recompute: no pass
