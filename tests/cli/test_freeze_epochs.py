"""freeze_epochs: the backbone stays bitwise unchanged (BatchNorm statistics too, and in the EMA) through epoch N
and trains after; a run resumed before, at and after the switch ends as the uninterrupted one. The same runs check,
on an imbalanced split, the balanced class weights they print, that the best checkpoint follows
best_metric, and the TensorBoard event file read back."""
import csv
import json
import os
import struct
from types import SimpleNamespace

from conftest import IMBALANCED_COUNTS, TINY_TRAIN_ARGS, make_imbalanced, run_script
from tools.core.config import parse_config
from tools.core.errors import UsageError
from tools.train.techniques.freeze_epochs import FreezeThenUnfreeze, hold_groups

import mindspore as ms
import numpy as np
import pytest
from mindcv.models import create_model

# resnet18 (no dropout: a resumed run repeats the uninterrupted one exactly); a constant lr, so that a run
# cut short at epoch k is the first k epochs of the 4-epoch run; batches of 16: one step an epoch (30 images)
BATCH = 16
ARGS = [*TINY_TRAIN_ARGS, "--batch_size", BATCH, "--mode", "1", "--model", "resnet18", "--opt", "momentum",
        "--scheduler", "constant", "--freeze_epochs", "2", "--class_weights", "balanced", "--sampler", "balanced",
        "--best_metric", "val_loss", "--tensorboard", "True",
        "--ema", "True"]   # checkpoints hold the EMA weights: bitwise too while frozen
EPOCHS = 4
BACKBONE = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.")


def weights(path):
    return {k: v.asnumpy() for k, v in ms.load_checkpoint(str(path)).items() if hasattr(v, "asnumpy")}


def results(folder):
    with open(os.path.join(folder, "results.csv"), encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("freeze_epochs")
    data = make_imbalanced(str(root / "data"))
    init = str(root / "init.ckpt")
    ms.set_seed(5)
    net = create_model("resnet18", num_classes=5)
    ms.save_checkpoint(net, init)
    del net
    return SimpleNamespace(root=root, data=data, init=init, args=[*ARGS, "--data_dir", data, "--ckpt_path", init])


@pytest.fixture(scope="module")
def reference(setup):
    out = setup.root / "reference"
    proc = run_script("finetune.py", *setup.args, "--epoch_size", EPOCHS, "--ckpt_save_dir", out)
    assert proc.returncode == 0, proc.stderr
    return SimpleNamespace(out=out, stdout=proc.stdout)


def test_backbone_bitwise_unchanged_until_the_switch_then_trained(setup, reference):
    init = weights(setup.init)
    backbone = [n for n in init if n.startswith(BACKBONE)]
    assert any(n.endswith("moving_mean") for n in backbone) and len(backbone) == len(init) - 2   # all but the head
    for epoch in (1, 2):
        saved = weights(reference.out / f"resnet18-{epoch}.ckpt")
        for name in backbone:
            assert np.array_equal(saved[name], init[name]), (epoch, name)
        assert not np.array_equal(saved["classifier.weight"], init["classifier.weight"])   # the head trained
    after = weights(reference.out / "resnet18-3.ckpt")
    unchanged = [n for n in backbone if np.array_equal(after[n], init[n])]
    assert not unchanged, unchanged
    assert "freeze_epochs: backbone unfrozen from epoch 3" in reference.stdout


def test_prints_the_balanced_weights_and_keeps_the_best_val_loss_epoch(reference):
    n, classes = sum(IMBALANCED_COUNTS.values()), len(IMBALANCED_COUNTS)
    expected = ", ".join(f"{name} {n / (classes * count):.3g}" for name, count in IMBALANCED_COUNTS.items())
    assert f"class_weights: {expected}" in reference.stdout
    rows = results(reference.out)
    assert len(rows) == EPOCHS and all(r["mean_per_class_acc"] for r in rows)
    best = min(rows, key=lambda r: float(r["val_loss"]))
    assert int(ms.load_checkpoint(str(reference.out / "resnet18_best.ckpt"))["epoch"].asnumpy()) == int(best["epoch"])


def read_events(folder):
    """``{tag: [(step, value)]}`` of every TFRecord event file in ``folder``, checking each record's CRCs."""
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.record_writer import masked_crc32c

    scalars = {}
    for name in sorted(os.listdir(folder)):
        data, pos = open(os.path.join(folder, name), "rb").read(), 0
        while pos < len(data):
            header = data[pos:pos + 8]
            (length,), (header_crc,) = struct.unpack("<Q", header), struct.unpack("<I", data[pos + 8:pos + 12])
            assert header_crc == masked_crc32c(header)
            body = data[pos + 12:pos + 12 + length]
            assert struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])[0] == masked_crc32c(body)
            pos += 16 + length
            event = Event.FromString(body)
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_tensorboard_scalars_read_back(reference):
    scalars = read_events(reference.out / "tensorboard")
    rows = results(reference.out)
    for tag, key in (("val/top1", "top1"), ("val/loss", "val_loss"), ("val/mean_per_class_acc", "mean_per_class_acc"),
                     ("train/epoch_loss", "train_loss"), ("time/seconds_per_epoch", "seconds")):
        assert [s for s, _ in scalars[tag]] == [1, 2, 3, 4], tag
        np.testing.assert_allclose([v for _, v in scalars[tag]], [float(r[key]) for r in rows], rtol=1e-5, err_msg=tag)
    steps = 30 // BATCH
    assert [s for s, _ in scalars["train/loss"]] == list(range(1, EPOCHS * steps + 1))     # log_interval 1
    np.testing.assert_allclose([v for _, v in scalars["train/lr"]], 0.01, rtol=1e-6)


def test_resume_before_at_and_after_the_switch_ends_as_the_uninterrupted_run(setup, reference):
    """Stopped after epoch 1 (before the switch), 2 (at it) and 3 (after it), each time resumed. A run cut
    short by a smaller epoch_size is a finished run, so each extension names its state file."""
    out = setup.root / "chain"
    for epochs in range(1, EPOCHS + 1):
        resume = ["--resume", str(out / "resume.ckpt")] if epochs > 1 else []
        proc = run_script("finetune.py", *setup.args, "--epoch_size", epochs, "--ckpt_save_dir", out, *resume)
        assert proc.returncode == 0, proc.stderr
        assert ("backbone unfrozen" in proc.stdout) == (epochs == 3), (epochs, proc.stdout)  # said once, when done
    for name in ("resnet18_last.ckpt", "resnet18_best.ckpt", "resume.ckpt"):
        got, want = weights(out / name), weights(reference.out / name)
        keys = [k for k in want if not k.startswith("learning_rate")]   # the schedule's length follows epoch_size
        assert sorted(keys) == sorted(k for k in got if not k.startswith("learning_rate"))
        for key in keys:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-5, err_msg=f"{name}: {key}")

    def table(folder):
        return [row.split()[:-1] for row in open(folder / "results.txt").read().splitlines()]

    assert table(out) == table(reference.out)


def test_hold_groups_zeroes_the_backbone_lr_for_the_held_steps():
    p = {name: SimpleNamespace(name=name) for name in ("features.0.w", "features.1.w", "classifier.w")}
    groups = [{"params": list(p.values()), "lr": [0.1, 0.2, 0.3, 0.4], "weight_decay": 0.5},
              {"order_params": list(p.values())}]
    held = hold_groups(groups, {"features.0.w", "features.1.w"}, 3)
    assert held[0] == {"params": [p["classifier.w"]], "lr": [0.1, 0.2, 0.3, 0.4], "weight_decay": 0.5}
    assert held[1] == {"params": [p["features.0.w"], p["features.1.w"]], "lr": [0.0, 0.0, 0.0, 0.4],
                       "weight_decay": 0.5}
    assert held[2] == groups[1]
    ramped = hold_groups(groups, {"features.0.w"}, 1, ramp_steps=2)   # 0, then 1/2 and 2/2 of the schedule
    np.testing.assert_allclose(ramped[1]["lr"], [0.0, 0.2 * 1 / 2, 0.3, 0.4])
    assert ramped[0]["lr"] == [0.1, 0.2, 0.3, 0.4]


class StepWithOwnTensor(ms.nn.Cell):
    """A train step's stand-in: the shared network and a tensor of its own (as EMA weights are)."""

    def __init__(self, network, value):
        super().__init__(auto_prefix=False)
        self.network = network
        self.own = ms.Parameter(ms.Tensor(np.full(2, value, np.float32)), name="own")


def test_the_switch_state_round_trips_and_a_run_resumed_after_it_does_not_announce_it_again(capsys):
    network = ms.nn.Dense(3, 2)
    frozen, full = StepWithOwnTensor(network, 7), StepWithOwnTensor(network, 0)
    trainer = SimpleNamespace(train_step=full, train_loader=None, is_main=True)
    switch = FreezeThenUnfreeze(2, network, frozen, full)
    switch.on_epoch_begin(trainer, 2)
    assert trainer.train_step is frozen and switch.state_dict() == {"unfrozen": False}
    switch.on_epoch_begin(trainer, 3)
    assert trainer.train_step is full and full.own.asnumpy().tolist() == [7, 7]    # carried at the switch
    assert switch.state_dict() == {"unfrozen": True}
    assert "freeze_epochs: backbone unfrozen from epoch 3" in capsys.readouterr().out
    saved = json.loads(json.dumps(switch.state_dict()))                  # as the resume state holds it

    def resumed(state):
        """Epoch 4 of a run resumed from ``state`` (None: an earlier version's, without callback state): the
        wiring hands the Trainer the frozen step, into which the resume state's tensors were loaded."""
        again_frozen, again_full = StepWithOwnTensor(network, 9), StepWithOwnTensor(network, 0)
        again = FreezeThenUnfreeze(2, network, again_frozen, again_full)
        if state is not None:
            again.load_state_dict(state)
        trainer = SimpleNamespace(train_step=again_frozen, train_loader=None, is_main=True)
        again.on_epoch_begin(trainer, 4)
        assert trainer.train_step is again_full and again_full.own.asnumpy().tolist() == [9, 9]
        assert again.state_dict() == {"unfrozen": True}
        return capsys.readouterr().out

    assert "unfrozen" not in resumed(saved)
    assert "freeze_epochs: backbone unfrozen from epoch 4" in resumed(None)


@pytest.mark.parametrize("flags,needle", [(["--freeze_backbone", "True"], "nothing would unfreeze"),
                                          (["--freeze_backbone", "True", "--cache_features", "True"], "freeze_epochs"),
                                          (["--cache_features", "True", "--sampler", "balanced"], "sampler"),
                                          (["--cache_features", "True", "--ema", "True"], "ema"),
                                          (["--cache_features", "True", "--freeze_bn_stats", "False"],
                                           "freeze_bn_stats"),
                                          (["--freeze_epochs", "-1"], "freeze_epochs"),
                                          (["--unfreeze_warmup_epochs", "-1"], "unfreeze_warmup_epochs"),
                                          (["--gradient_accumulation_steps", "2"], "gradient_accumulation_steps")])
def test_impossible_freeze_epochs_settings_are_refused(flags, needle):
    with pytest.raises(UsageError, match=needle):
        parse_config(["--freeze_epochs", "2", *flags], "t")


def test_graph_mode_switches_batchnorm_back(setup):
    """GRAPH mode, where BatchNorm's mode is a compile-time constant: the frozen step compiles with the
    backbone's BatchNorm in inference mode, the full step (compiled at the switch) with it training."""
    out = setup.root / "graph"
    proc = run_script("finetune.py", *setup.args, "--mode", "0", "--epoch_size", 2, "--freeze_epochs", 1,
                      "--tensorboard", "False", "--ckpt_save_dir", out)
    assert proc.returncode == 0, proc.stderr
    init, first, second = weights(setup.init), weights(out / "resnet18-1.ckpt"), weights(out / "resnet18-2.ckpt")
    backbone = [n for n in init if n.startswith(BACKBONE)]
    assert [n for n in backbone if not np.array_equal(first[n], init[n])] == []
    assert [n for n in backbone if np.array_equal(second[n], first[n])] == []      # moving statistics too
    assert not np.array_equal(first["classifier.weight"], init["classifier.weight"])


def test_cached_features_in_the_frozen_epochs_then_full_and_resumed(setup):
    """cache_features: epochs 1-2 train the head on features computed once (the backbone bitwise unchanged),
    epochs 3-4 the whole network on images; stopped after epoch 1 and after epoch 3, each time resumed,
    it ends as the uninterrupted run."""
    args = [a for a in setup.args]
    args[args.index("--sampler") + 1] = "none"            # cached features are read in a plain shuffle
    args += ["--cache_features", "True", "--tensorboard", "False", "--ema", "False"]   # ema: refused with the cache
    ref, chain = setup.root / "cached_ref", setup.root / "cached_chain"
    proc = run_script("finetune.py", *args, "--epoch_size", EPOCHS, "--ckpt_save_dir", ref)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("cache_features: ") == 1 and "backbone unfrozen from epoch 3" in proc.stdout
    init = weights(setup.init)
    backbone = [n for n in init if n.startswith(BACKBONE)]
    for epoch in (1, 2):
        saved = weights(ref / f"resnet18-{epoch}.ckpt")
        assert [n for n in backbone if not np.array_equal(saved[n], init[n])] == [], epoch
        assert not np.array_equal(saved["classifier.weight"], init["classifier.weight"])
    fourth = weights(ref / "resnet18-4.ckpt")
    assert [n for n in backbone if np.array_equal(fourth[n], init[n])] == []     # moving statistics too
    for epochs in (1, 3, 4):
        resume = ["--resume", str(chain / "resume.ckpt")] if epochs > 1 else []
        proc = run_script("finetune.py", *args, "--epoch_size", epochs, "--ckpt_save_dir", chain, *resume)
        assert proc.returncode == 0, proc.stderr
    for name in ("resnet18_last.ckpt", "resume.ckpt"):
        got, want = weights(chain / name), weights(ref / name)
        keys = [k for k in want if not k.startswith("learning_rate")]
        assert sorted(keys) == sorted(k for k in got if not k.startswith("learning_rate"))
        for key in keys:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-5, err_msg=f"{name}: {key}")
