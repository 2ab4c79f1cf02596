"""The Trainer's validation schedule on a tiny Dense network (no script run): ``val_interval: N`` validates every N
epochs and always the last, the best checkpoint is chosen among validated epochs only, early-stopping patience
counts validations (not epochs), an unvalidated epoch's results row has empty validation cells, and a resumed run
validates the same epochs as the uninterrupted one."""
import csv
import json
import os
from types import SimpleNamespace

from tools.models.factory import read_checkpoint
from tools.train.callbacks import Callback
from tools.train.trainer import Trainer

import mindspore as ms
import mindspore.dataset as ds
import numpy as np
import pytest
from mindspore import nn

CLASSES = ["a", "b", "c"]


def tiny_data(seed, count):
    """``count`` 4-feature samples of 3 linearly separable-ish classes."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, count).astype(np.int32)
    features = (rng.standard_normal((count, 4)) + np.eye(3, 4)[labels] * 2).astype(np.float32)
    return features, labels


def loader(seed, count, shuffle):
    return ds.NumpySlicesDataset(tiny_data(seed, count), column_names=["image", "label"],
                                 shuffle=shuffle).batch(4, drop_remainder=True)


def tiny_config(folder, **overrides):
    """A hand-made run config with every key the Trainer reads."""
    values = dict(ckpt_save_dir=str(folder), model="net", seed=1, epoch_size=5, val_interval=1, log_interval=100,
                  batch_size=4, recovery_interval=0, ema=False, early_stop_patience=0, early_stop_min_delta=0.0,
                  best_metric="top1", keep_checkpoint_max=10, ckpt_save_policy="latest_k", ckpt_save_interval=1,
                  loss_scale_type="fixed")
    values.update(overrides)
    return SimpleNamespace(**values)


def tiny_trainer(folder, callbacks=(), **overrides):
    """A Trainer over a seeded Dense(4, 3) and its SGD train step (same initial weights every call)."""
    os.makedirs(folder, exist_ok=True)
    ms.set_seed(0)
    network = nn.Dense(4, 3)
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    train_step = nn.TrainOneStepCell(nn.WithLossCell(network, loss), nn.Momentum(network.trainable_params(), 0.05,
                                                                                 0.9)).set_train()
    return Trainer(tiny_config(folder, **overrides), network, train_step, [0.05] * 1000, CLASSES,
                   callbacks=list(callbacks))


def fit(trainer, start_epoch=1):
    return trainer.fit(loader(1, 32, True), loader(2, 24, False), start_epoch)


def validated(rows):
    return [row["epoch"] for row in rows if row.get("top1") is not None]


def summary(folder):
    with open(os.path.join(folder, "summary.json"), encoding="utf-8") as f:
        return json.load(f)


def test_every_nth_epoch_and_the_last_are_validated_and_the_best_is_among_them(tmp_path):
    rows = fit(tiny_trainer(tmp_path, epoch_size=5, val_interval=2))
    assert validated(rows) == [2, 4, 5]
    with open(tmp_path / "results.csv", newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert [row["epoch"] for row in table] == ["1", "2", "3", "4", "5"]
    for row in table:                                                   # unvalidated rows: empty val cells
        assert (row["top1"] == row["val_loss"] == "") == (row["epoch"] in ("1", "3"))
        assert row["train_loss"] and row["seconds"]
    scores = {row["epoch"]: row["top1"] for row in rows if row.get("top1") is not None}
    best = max(scores, key=lambda epoch: (scores[epoch], -epoch))     # a tie keeps the earlier (strictly better)
    facts = summary(tmp_path)
    assert facts["best_epoch"] == best and facts["best_top1"] == scores[best] and facts["early_stop"] is False
    assert int(read_checkpoint(str(tmp_path / "net_best.ckpt"))["epoch"].asnumpy()) == best


def test_patience_counts_validations_not_epochs(tmp_path):
    """min_delta 1.0: no validation after the first can be better, so each one adds 1 to the stale count; with
    val_interval 2 and patience 2 the run validates at 2 (best), 4, 6 and stops after epoch 6 (3 validations)."""
    rows = fit(tiny_trainer(tmp_path, epoch_size=20, val_interval=2, early_stop_patience=2,
                            early_stop_min_delta=1.0))
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4, 5, 6] and validated(rows) == [2, 4, 6]
    facts = summary(tmp_path)
    assert facts["early_stop"] is True and facts["best_epoch"] == 2 and facts["epochs_done"] == 6


class StopAfter(Callback):
    """Ctrl-C right after ``epoch``'s resume state is written."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, trainer, epoch, row):
        if epoch == self.epoch:
            raise KeyboardInterrupt


@pytest.mark.parametrize("stop", [1, 2])
def test_a_resumed_run_validates_the_epochs_of_the_uninterrupted_one(tmp_path, stop):
    whole = fit(tiny_trainer(tmp_path / "whole", epoch_size=5, val_interval=2))
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_trainer(tmp_path / "cut", [StopAfter(stop)], epoch_size=5, val_interval=2))
    resumed = tiny_trainer(tmp_path / "cut", epoch_size=5, val_interval=2)
    assert resumed.resume("auto") == stop + 1
    rows = fit(resumed, stop + 1)
    assert validated(rows) == validated(whole) == [2, 4, 5]
    for mine, theirs in zip(rows, whole):
        for key in ("epoch", "train_loss", "top1", "val_loss"):
            expected = theirs.get(key)
            assert mine.get(key) == (None if expected is None else pytest.approx(expected, rel=1e-6)), (key, mine)
    assert summary(tmp_path / "cut")["best_epoch"] == summary(tmp_path / "whole")["best_epoch"]
