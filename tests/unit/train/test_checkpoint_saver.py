"""tools.train.checkpoints.CheckpointSaver on its own (a tiny Dense network, no training): which epoch checkpoints
stay on disk under latest_k / top_k and ckpt_save_interval, what they hold, and the kept list's trip through
the resume state (a resumed run deletes the files its first part would have deleted)."""
import json
import os
import shutil
from types import SimpleNamespace

from tools.core.errors import DataError
from tools.models.factory import CLASS_NAMES_KEY, read_checkpoint
from tools.train.checkpoints import CheckpointSaver
from tools.train.techniques.freeze_epochs import FreezeThenUnfreeze
from tools.train.trainer import Trainer

import mindspore as ms
import numpy as np
import pytest

CLASSES = ["a", "b"]


def network_at(net, epoch):
    """Give ``net`` weights that name ``epoch`` (so a file read back tells which epoch wrote it)."""
    net.weight.set_data(ms.Tensor(np.full((2, 3), epoch, np.float32)))
    return net


def epoch_files(folder):
    """The epoch numbers of the ``net-{epoch}.ckpt`` files in ``folder``, read from the folder itself."""
    return sorted(int(name[len("net-"):-len(".ckpt")]) for name in os.listdir(folder) if name.startswith("net-"))


def saver(folder, **options):
    return CheckpointSaver(str(folder), "net", CLASSES, **options)


def test_latest_k_keeps_the_newest_files_and_each_holds_its_epochs_weights(tmp_path):
    keeper, net = saver(tmp_path, keep_max=2, policy="latest_k"), ms.nn.Dense(3, 2)
    for epoch in range(1, 6):
        keeper.save(network_at(net, epoch), epoch, {"top1": 0.9 - epoch / 10}, best=epoch == 2)
        assert epoch_files(tmp_path) == list(range(max(1, epoch - 1), epoch + 1))
    assert sorted(os.listdir(tmp_path)) == ["net-4.ckpt", "net-5.ckpt", "net_best.ckpt", "net_last.ckpt"]
    for name, epoch in (("net-4.ckpt", 4), ("net-5.ckpt", 5), ("net_last.ckpt", 5), ("net_best.ckpt", 2)):
        params = read_checkpoint(str(tmp_path / name))
        np.testing.assert_array_equal(params["weight"].asnumpy(), np.full((2, 3), epoch, np.float32))
        assert int(params["epoch"].asnumpy()) == epoch and json.loads(params[CLASS_NAMES_KEY]) == CLASSES
    assert [entry[1] for entry in keeper.saved_epochs] == [5, 4]
    assert keeper.best_path == str(tmp_path / "net_best.ckpt") and keeper.last_path == str(tmp_path / "net_last.ckpt")


ROWS = {"top1": [0.3, 0.6, 0.5, 0.2, 0.4], "mean_per_class_acc": [0.5, 0.1, 0.2, 0.6, 0.3],
        "val_loss": [0.4, 0.9, 0.2, 0.8, 0.7]}


@pytest.mark.parametrize("metric", list(ROWS))
def test_top_k_keeps_the_best_files_by_the_metric(tmp_path, metric):
    keeper, net = saver(tmp_path, keep_max=2, policy="top_k", metric=metric), ms.nn.Dense(3, 2)
    for epoch in range(1, 6):
        row = {name: values[epoch - 1] for name, values in ROWS.items()}
        keeper.save(network_at(net, epoch), epoch, row)
    values = np.array(ROWS[metric])
    best_first = np.argsort(values if metric == "val_loss" else -values) + 1  # loss: lower is better
    assert epoch_files(tmp_path) == sorted(best_first[:2].tolist())
    assert [entry[1] for entry in keeper.saved_epochs] == best_first[:2].tolist()
    assert not os.path.exists(tmp_path / "net_best.ckpt")               # best=False: the saver writes no best


def test_top_k_ranks_an_unvalidated_epoch_last_and_a_tie_keeps_the_newer(tmp_path):
    keeper, net = saver(tmp_path, keep_max=2, policy="top_k"), ms.nn.Dense(3, 2)
    for epoch, row in ((1, {"top1": 0.5}), (2, {}), (3, {"top1": 0.5})):   # epoch 2: no validation
        keeper.save(network_at(net, epoch), epoch, row)
    assert epoch_files(tmp_path) == [1, 3]
    keeper.keep_max = 1
    keeper.save(network_at(net, 4), 4, {"top1": 0.4})
    assert epoch_files(tmp_path) == [3]                                 # 1 and 3 tie at 0.5: 3 is newer


def test_interval_saves_every_nth_epoch_and_last_after_each(tmp_path):
    keeper, net = saver(tmp_path, keep_max=10, interval=3), ms.nn.Dense(3, 2)
    for epoch in range(1, 8):
        keeper.save(network_at(net, epoch), epoch, {"top1": 0.5})
        assert int(read_checkpoint(keeper.last_path)["epoch"].asnumpy()) == epoch
    assert epoch_files(tmp_path) == [3, 6]


def test_the_kept_list_round_trips_through_the_resume_state_and_rotation_goes_on(tmp_path):
    first, net = saver(tmp_path, keep_max=2, policy="top_k", metric="val_loss"), ms.nn.Dense(3, 2)
    for epoch, row in ((1, {}), (2, {"top1": 0.5, "val_loss": 0.7})):  # epoch 1 unvalidated: score -inf
        first.save(network_at(net, epoch), epoch, row)
    first.write_state(net, {"epoch": 1})
    first.write_state(net, {"epoch": 2})
    resumed = saver(tmp_path, keep_max=2, policy="top_k", metric="val_loss")
    assert resumed.state_files() == [resumed.state_path, resumed.previous_state_path]
    assert resumed.read_state(resumed.previous_state_path)[1]["epoch"] == 1
    params, state = resumed.read_state(resumed.state_path)
    np.testing.assert_array_equal(params["weight"].asnumpy(), net.weight.asnumpy())
    assert state["epoch"] == 2 and resumed.saved_epochs == []
    resumed.restore(state)
    assert resumed.saved_epochs == first.saved_epochs and resumed.saved_epochs[1][0] == -np.inf
    resumed.save(network_at(net, 3), 3, {"top1": 0.5, "val_loss": 0.5})
    assert epoch_files(tmp_path) == [2, 3]                              # the first part's epoch 1 goes
    resumed.save(network_at(net, 4), 4, {"top1": 0.5, "val_loss": 0.6})
    assert epoch_files(tmp_path) == [3, 4]


def config(folder):
    """A hand-made run config of the Dense network's Trainer (top_k by val_loss, two kept)."""
    return SimpleNamespace(ckpt_save_dir=str(folder), model="net", seed=1, loss_scale_type="fixed",
                           best_metric="val_loss", keep_checkpoint_max=2, ckpt_save_policy="top_k",
                           ckpt_save_interval=1)


def test_a_resume_state_of_the_earlier_trainer_format_resumes_and_rotates(tmp_path):
    """The resume.ckpt an earlier version wrote (the Trainer's own state entry, saved_epochs inside, no callback
    state) goes on; its callbacks start as in a new run."""
    net = ms.nn.Dense(3, 2)
    folder = str(tmp_path)
    for epoch in (2, 3):
        ms.save_checkpoint(network_at(net, epoch), os.path.join(folder, f"net-{epoch}.ckpt"), crc_check=True)
    state = {"epoch": 3, "rows": [], "best_top1": 0.5, "stale": 1, "best_metric": "val_loss", "best_value": 0.5,
             "saved_epochs": [[-0.5, 2, os.path.join(folder, "net-2.ckpt")],
                              [-0.7, 3, os.path.join(folder, "net-3.ckpt")]],
             "frozen": [], "step": [0, 0.0]}
    ms.save_checkpoint(net, os.path.join(folder, "resume.ckpt"), append_dict={"suite_train_state": json.dumps(state)},
                       crc_check=True)
    fresh = ms.nn.Dense(3, 2)
    switch = FreezeThenUnfreeze(2, fresh, fresh, fresh)
    trainer = Trainer(config(folder), fresh, fresh, [0.1], CLASSES, callbacks=[switch])
    assert trainer.resume("auto") == 4 and trainer.stale == 1
    assert switch.state_dict() == {"unfrozen": False}
    np.testing.assert_array_equal(fresh.weight.asnumpy(), np.full((2, 3), 3, np.float32))
    assert trainer.saver.saved_epochs == [tuple(item) for item in state["saved_epochs"]]
    trainer.saver.save(network_at(trainer.network, 4), 4, {"top1": 0.5, "val_loss": 0.6})
    assert epoch_files(folder) == [2, 4]                                # 0.7 (epoch 3) falls out


def test_the_resume_state_holds_each_callbacks_state_for_the_resumed_run(tmp_path):
    net = ms.nn.Dense(3, 2)
    switch = FreezeThenUnfreeze(2, net, net, net)
    switch.unfrozen = True                                              # as after the switch
    Trainer(config(tmp_path), net, net, [0.1], CLASSES, callbacks=[switch]).save_state(3)
    fresh = ms.nn.Dense(3, 2)
    again = FreezeThenUnfreeze(2, fresh, fresh, fresh)
    assert Trainer(config(tmp_path), fresh, fresh, [0.1], CLASSES, callbacks=[again]).resume("auto") == 4
    assert again.state_dict() == {"unfrozen": True}


def test_a_plain_checkpoint_is_not_a_resume_state(tmp_path):
    keeper = saver(tmp_path)
    keeper.save(ms.nn.Dense(3, 2), 1, {})
    with pytest.raises(DataError, match="net_last.ckpt is not a resume checkpoint"):
        keeper.read_state(keeper.last_path)
    assert keeper.state_files() == []


def test_a_copied_run_folder_rotates_its_own_files_and_leaves_the_original_alone(tmp_path):
    original, copy, net = tmp_path / "run", tmp_path / "copy", ms.nn.Dense(3, 2)
    first = saver(original, keep_max=2)
    os.makedirs(original)
    for epoch in (1, 2):
        first.save(network_at(net, epoch), epoch, {"top1": 0.5})
    first.write_state(net, {"epoch": 2})
    shutil.copytree(original, copy)
    resumed = saver(copy, keep_max=2)
    resumed.restore(resumed.read_state(resumed.state_path)[1])
    resumed.save(network_at(net, 3), 3, {"top1": 0.5})
    assert epoch_files(copy) == [2, 3] and epoch_files(original) == [1, 2]   # was: the original's epoch 1 deleted
