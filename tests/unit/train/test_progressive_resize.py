"""image_resize_schedule (tools/train/techniques/progressive_resize.py) without a script: which size each epoch
trains at, the schedule's values, and through the Trainer (GRAPH mode: the train step compiles per size) each epoch
fed at its size, and a run resumed before, at and after the switch ending bitwise as the uninterrupted one."""
import os

from tools.core.config import to_resize_schedule
from tools.train.callbacks import Callback
from tools.train.techniques.progressive_resize import ProgressiveResize, describe_schedule, size_at
from tools.train.trainer import Trainer

import mindspore as ms
import mindspore.dataset as ds
import numpy as np
import pytest
from mindspore import nn
from test_val_interval import StopAfter, tiny_config
from test_weight_averaging import BatchNormNet

SCHEDULE = [[0, 6], [2, 9]]


def test_size_at_and_the_plan_line():
    schedule = [[0, 64], [3, 96], [5, 128]]
    assert [size_at(schedule, epoch) for epoch in range(1, 8)] == [64, 64, 64, 96, 96, 128, 128]
    assert describe_schedule(schedule, 7) == "epochs 1-3 at 64 px, 4-5 at 96 px, 6-7 at 128 px"
    assert describe_schedule(schedule, 4) == "epochs 1-3 at 64 px, 4 at 96 px"


@pytest.mark.parametrize("value", [[[0, 64], [3, 96]], "0 64 3 96", ["0:64", "3:96"], ["0", "64", "3", "96"]])
def test_the_schedule_reads_from_yaml_and_the_command_line(value):
    assert to_resize_schedule(value) == [[0, 64], [3, 96]]


@pytest.mark.parametrize("value", [[[1, 64]], "0 64 3", [[0, 64], [0, 96]], "0:0", [[0, 64, 1]], "a b"])
def test_bad_schedules_are_refused(value):
    with pytest.raises(ValueError):
        to_resize_schedule(value)


def loader(size, seed=1):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, 24).astype(np.int32)
    images = (rng.standard_normal((24, 3, size, size)) + labels[:, None, None, None]).astype(np.float32)
    return ds.NumpySlicesDataset((images, labels), column_names=["image", "label"], shuffle=True).batch(
        4, drop_remainder=True)


class Sizes(Callback):
    """Records the image size of the loader each epoch trains on (after the schedule chose it)."""

    def __init__(self):
        self.seen = {}

    def on_epoch_begin(self, trainer, epoch):
        self.seen[epoch] = next(trainer.train_loader.create_tuple_iterator(num_epochs=1))[0].shape[-1]


def resize_trainer(folder, *callbacks):
    os.makedirs(folder, exist_ok=True)
    ms.set_seed(0)
    network = BatchNormNet()
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    step = nn.TrainOneStepCell(nn.WithLossCell(network, loss), nn.Momentum(network.trainable_params(), 0.05, 0.9))
    resize = ProgressiveResize(SCHEDULE, {6: loader(6), 9: loader(9)})
    return Trainer(tiny_config(folder, epoch_size=4), network, step.set_train(), [0.05] * 1000, ["a", "b", "c"],
                   callbacks=[resize, *callbacks])


def fit(trainer, start_epoch=1):
    return trainer.fit(loader(6), ds.NumpySlicesDataset((np.ones((8, 3, 9, 9), np.float32), np.zeros(8, np.int32)),
                                                        column_names=["image", "label"]).batch(4), start_epoch)


def weights(trainer):
    return {p.name: p.asnumpy() for p in trainer.train_step.get_parameters()}


@pytest.mark.parametrize("mode", [0], indirect=True)
def test_each_epoch_trains_at_its_size_and_a_resume_across_the_switch_is_exact(tmp_path, mode, capsys):
    sizes = Sizes()
    whole = resize_trainer(tmp_path / "whole", sizes)
    rows = fit(whole)
    assert sizes.seen == {1: 6, 2: 6, 3: 9, 4: 9} and all(np.isfinite(row["train_loss"]) for row in rows)
    out = capsys.readouterr().out
    assert "image_resize_schedule: epoch 1 trains at 6 px" in out and "epoch 3 trains at 9 px" in out
    reference = weights(whole)
    for stop in (1, 2, 3):                                              # before, at and after the switch
        folder = tmp_path / f"cut{stop}"
        with pytest.raises(KeyboardInterrupt):
            fit(resize_trainer(folder, StopAfter(stop)))
        sizes = Sizes()
        resumed = resize_trainer(folder, sizes)
        start = resumed.resume("auto")
        again = fit(resumed, start)
        assert min(sizes.seen) == stop + 1 and sizes.seen[4] == 9
        assert [row["train_loss"] for row in again] == [row["train_loss"] for row in rows]
        for name, value in weights(resumed).items():
            np.testing.assert_array_equal(value, reference[name], err_msg=f"stopped after {stop}: {name}")
