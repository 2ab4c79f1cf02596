"""Imbalance-aware training: class weights reach the loss and raise a minority class's recall, the balanced
sampler draws classes equally, shards and reseeds per epoch, and the best epoch follows best_metric."""
from collections import Counter
from types import SimpleNamespace

from conftest import IMBALANCED_COUNTS, make_imbalanced
from tools.core.config import parse_config
from tools.core.errors import UsageError
from tools.datasets.loader import open_split
from tools.train.techniques.imbalance import BalancedSampler, resolve_class_weights
from tools.train.trainer import Trainer

import mindspore.dataset as ds
import numpy as np
import pytest
from mindcv.loss import create_loss
from mindspore import Tensor, nn


@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory):
    return make_imbalanced(str(tmp_path_factory.mktemp("imbalanced") / "data"))


def test_balanced_weights_are_n_over_classes_times_count():
    labels = np.array([0] * 6 + [1] * 3 + [3] * 1)          # class 2 has no image
    weights = resolve_class_weights("balanced", labels, 4)
    np.testing.assert_allclose(weights, [10 / (4 * 6), 10 / (4 * 3), 0.0, 10 / (4 * 1)], rtol=1e-6)
    assert resolve_class_weights(None, labels, 4) is None
    np.testing.assert_array_equal(resolve_class_weights([1, 2, 3, 4], labels, 4), [1, 2, 3, 4])
    with pytest.raises(UsageError, match="3 weights but the data has 4 classes"):
        resolve_class_weights([1, 2, 3], labels, 4)


@pytest.mark.parametrize("flags,needle", [
    (["--class_weights", "-1", "1"], "class_weights"), (["--class_weights", "heavy"], "class_weights"),
    (["--sampler", "uniform"], "sampler"), (["--best_metric", "top5"], "best_metric"),
    (["--early_stop_min_delta", "-0.1"], "early_stop_min_delta"),
    (["--sampler", "balanced", "--aug_repeats", "2"], "aug_repeats"),
    (["--class_weights", "balanced", "--loss", "bce"], "loss: ce")])
def test_bad_settings_are_refused(flags, needle):
    with pytest.raises(UsageError, match=needle):
        parse_config(flags, "t")


def test_class_weights_parse_from_yaml_list_and_cli_words(tmp_path):
    (tmp_path / "c.yaml").write_text("class_weights: [1, 2.5, 0]\n")
    assert parse_config(["--config", str(tmp_path / "c.yaml")], "t").class_weights == [1.0, 2.5, 0.0]
    assert parse_config(["--class_weights", "balanced"], "t").class_weights == "balanced"
    assert parse_config(["--class_weights", "none"], "t").class_weights is None


def test_weighted_loss_is_numpys_weighted_mean():
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(6, 3)).astype(np.float32), np.array([0, 0, 0, 0, 1, 2], np.int32)
    weights = resolve_class_weights("balanced", labels, 3)
    got = float(create_loss(name="ce", weight=Tensor(weights))(Tensor(logits), Tensor(labels)).asnumpy())
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    per_sample = -log_p[np.arange(6), labels]
    np.testing.assert_allclose(got, (weights[labels] * per_sample).sum() / weights[labels].sum(), rtol=1e-5)


def minority_recall(class_weights):
    """Train a linear classifier on 190 vs 10 overlapping 2-D points; recall of the minority class on
    a balanced test set."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (190, 2)), rng.normal(1.5, 1, (10, 2))]).astype(np.float32)
    y = np.array([0] * 190 + [1] * 10, np.int32)
    weights = resolve_class_weights(class_weights, y, 2)
    net = nn.Dense(2, 2, weight_init="zeros", bias_init="zeros")
    loss = create_loss(name="ce", weight=None if weights is None else Tensor(weights))
    step = nn.TrainOneStepCell(nn.WithLossCell(net, loss), nn.Momentum(net.trainable_params(), 0.1, 0.9))
    for _ in range(150):
        step(Tensor(x), Tensor(y))
    test = rng.normal(1.5, 1, (500, 2)).astype(np.float32)
    return float((net(Tensor(test)).asnumpy().argmax(1) == 1).mean())


@pytest.mark.parametrize("mode", [0], indirect=True)       # GRAPH: 150 steps in seconds
def test_balanced_class_weights_raise_minority_recall(mode):
    plain, balanced = minority_recall(None), minority_recall("balanced")
    assert plain < 0.45 and balanced > 0.8, (plain, balanced)   # 0.37 and 0.89 here


def test_sampler_draws_classes_equally_and_reseeds_per_epoch():
    labels = np.array([0] * 90 + [1] * 10)
    sampler = BalancedSampler(labels)
    draws = []
    for epoch_seed in range(20):
        ds.config.set_seed(epoch_seed)
        draws.append(list(sampler))
    assert all(len(d) == 100 for d in draws)
    minority = np.mean([np.mean(labels[d] == 1) for d in draws])
    assert 0.45 < minority < 0.55, minority
    ds.config.set_seed(3)
    assert list(sampler) == draws[3] and draws[3] != draws[4]


def test_sampler_shards_share_out_one_draw():
    labels = np.array([0] * 30 + [1] * 5 + [2] * 5)
    ds.config.set_seed(7)
    whole = list(BalancedSampler(labels))
    shards = [list(BalancedSampler(labels, 2, rank)) for rank in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 20
    assert [i for pair in zip(*shards) for i in pair] == whole


def test_balanced_training_split_through_open_split(imbalanced):
    cfg = parse_config(["--data_dir", imbalanced, "--train_split", "trainval", "--dataset", "", "--sampler",
                        "balanced", "--num_parallel_workers", "1"], "t")
    data = open_split(cfg, "trainval", training=True)
    np.testing.assert_array_equal(np.bincount(data.labels), list(IMBALANCED_COUNTS.values()))
    counts = Counter()
    for seed in range(10):
        ds.config.set_seed(seed)
        counts.update(int(row[1]) for row in data.dataset.create_tuple_iterator(num_epochs=1, output_numpy=True))
    assert sum(counts.values()) == 10 * 30
    assert min(counts.values()) > 0.6 * 60 and max(counts.values()) < 1.4 * 60, counts   # 60 expected per class
    plain = open_split(parse_config(["--data_dir", imbalanced, "--train_split", "trainval", "--dataset", "",
                                     "--num_parallel_workers", "1"], "t"), "trainval", training=True)
    seen = Counter(int(row[1]) for row in plain.dataset.create_tuple_iterator(num_epochs=1, output_numpy=True))
    assert [seen[i] for i in range(5)] == list(IMBALANCED_COUNTS.values())


ROWS = [{"epoch": 1, "top1": 0.5, "mean_per_class_acc": 0.45, "val_loss": 0.8},
        {"epoch": 2, "top1": 0.7, "mean_per_class_acc": 0.30, "val_loss": 1.0},
        {"epoch": 3, "top1": 0.6, "mean_per_class_acc": 0.50, "val_loss": 0.9}]


@pytest.mark.parametrize("metric,min_delta,best_epoch,stale", [
    ("top1", 0.0, 2, 1), ("mean_per_class_acc", 0.0, 3, 0), ("val_loss", 0.0, 1, 2),
    ("mean_per_class_acc", 0.1, 1, 2), ("top1", 0.15, 2, 1), ("top1", 0.25, 1, 2)])
def test_best_epoch_follows_best_metric_and_min_delta(tmp_path, metric, min_delta, best_epoch, stale):
    cfg = SimpleNamespace(ckpt_save_dir=str(tmp_path), model="m", best_metric=metric, early_stop_min_delta=min_delta)
    trainer = Trainer(cfg, None, None, [0.1], ["a"])
    improved = []
    for row in ROWS:
        trainer.track_best(row)
        improved.append(trainer.improved)
    assert improved.index(True) == 0 and max(i + 1 for i, up in enumerate(improved) if up) == best_epoch
    assert trainer.best_value == ROWS[best_epoch - 1][metric] and trainer.best_top1 == ROWS[best_epoch - 1]["top1"]
    assert trainer.stale == stale
