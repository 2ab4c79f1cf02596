"""Distillation in the library: the first step's loss equals numpy's formula from the teacher's and the student's
logits (GRAPH and PyNative, online and cached teacher), the teacher stays bitwise unchanged (BatchNorm statistics
too) and outside the train step's parameters, and the config's refusals."""
from conftest import TINY_TRAIN_ARGS
from tools.core.config import parse_config
from tools.core.errors import UsageError
from tools.evaluate.inference import batches
from tools.train.checkpoints import save_weights
from tools.train.techniques.distillation import DistilledWithLoss
from tools.train.wiring import build_training, describe

import mindspore as ms
import numpy as np
import pytest
from mindcv.models import create_model

TEACHER = "mobilenet_v3_small_100"  # BatchNorm and a dropout: inference mode shows in both
FIXED_VIEWS = ["--scale", "1", "1", "--ratio", "1", "1", "--hflip", "0", "--color_jitter", "0"]
SEED = 42
CLASSES = ["T-shirt/top", "Trouser", "Sneaker", "Ankle boot", "Bag"]


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory):
    """A suite checkpoint of a (random) teacher of the tiny data's classes, BatchNorm statistics made non-trivial."""
    path = str(tmp_path_factory.mktemp("teacher") / f"{TEACHER}_best.ckpt")
    ms.set_seed(11)
    net = create_model(TEACHER, num_classes=len(CLASSES))
    rng = np.random.default_rng(0)
    for param in net.get_parameters():  # logits of order 1 (MindCV's initial head gives ~1e-10)
        if param.name.endswith("moving_mean") or param.name == "classifier.3.weight":
            scale = 0.1 if param.name.endswith("moving_mean") else 1.0
            param.set_data(ms.Tensor(rng.normal(0, scale, param.shape).astype(np.float32)))
    save_weights(net, path, CLASSES)
    del net
    return path


def config(data, teacher_ckpt, *args):
    # resnet18: no dropout, so the student's logits computed here are the ones its first step computes
    return parse_config(["--data_dir", data, *TINY_TRAIN_ARGS, "--model", "resnet18", "--opt", "momentum",
                         "--teacher_model", TEACHER, "--teacher_ckpt", teacher_ckpt, "--label_smoothing", "0.1",
                         "--distill_alpha", "0.3", "--distill_temperature", "2.5", "--val_while_train", "False",
                         "--seed", str(SEED),
                         *args], "t")


def log_softmax(x):
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def numpy_loss(student, teacher, labels, alpha, temperature, smoothing, classes):
    """alpha * CE with label smoothing (MindSpore's: (1 - e) * target + e / C) + (1 - alpha) * T^2 * KL."""
    log_p = log_softmax(student.astype(np.float64))
    one_hot = labels if labels.ndim == 2 else np.eye(classes)[labels]   # mixup's labels are mixed already
    target = one_hot * (1 - smoothing) + smoothing / classes
    hard = -(target * log_p).sum(axis=1).mean()
    log_s, log_t = log_softmax(student / temperature), log_softmax(teacher / temperature)
    soft = (np.exp(log_t) * (log_t - log_s)).sum(axis=1).mean() * temperature ** 2
    return alpha * hard + (1 - alpha) * soft


def first_batch(run):
    """Epoch 1's first batch, as the Trainer draws it (data engine seeded with seed + epoch)."""
    ms.dataset.config.set_seed(SEED + 1)
    return next(iter(batches(run.train_loader)))


def teacher_state(run):
    return {p.name: p.asnumpy().copy() for p in run.teacher.network.get_parameters()}


@pytest.mark.parametrize("mode, flags", [(0, []), (1, []), (0, ["--mixup", "0.4"])], indirect=["mode"],
                         ids=["graph", "pynative", "graph-mixup"])
def test_first_step_loss_equals_numpy_and_the_teacher_never_changes(tiny_aircraft, teacher_ckpt, mode, flags):
    """With mixup the teacher's logits are those of the mixed images the student sees, the CE's of the mixed labels."""
    cfg = config(tiny_aircraft, teacher_ckpt, "--mode", str(mode), *flags)
    run = build_training(cfg, verbose=False)
    before = teacher_state(run)
    assert any(name.endswith("moving_mean") for name in before)
    assert not [p.name for p in run.train_step.get_parameters() if "teacher." in p.name]  # not saved or trained
    images, labels = first_batch(run)
    student = run.network(images).asnumpy()                   # train mode, as in the step (no dropout in resnet18)
    teacher = run.teacher.network(images).asnumpy()           # inference mode
    want = numpy_loss(student, teacher, labels.asnumpy(), 0.3, 2.5, 0.1, len(CLASSES))
    loss = float(run.train_step(images, labels).asnumpy())
    assert abs(loss - want) < 1e-5, (loss, want)
    for images, labels in batches(run.train_loader):
        run.train_step(images, labels)
    assert not run.teacher.network.training
    after = teacher_state(run)
    for name, value in before.items():
        assert np.array_equal(after[name], value), name
    assert "distillation: teacher mobilenet_v3_small_100" in describe(cfg, run)


def test_both_steps_of_freeze_epochs_distil_and_ema_holds_no_teacher(tiny_aircraft, teacher_ckpt):
    run = build_training(config(tiny_aircraft, teacher_ckpt, "--freeze_epochs", "1", "--ema", "True"), verbose=False)
    switch = run.callbacks[0]
    for step in (switch.frozen_step, switch.full_step):
        assert isinstance(step.network, DistilledWithLoss)
        names = [p.name for p in step.get_parameters()]
        assert any(name.startswith("ema.") for name in names)
        assert not [name for name in names if "teacher." in name]


def test_cached_logits_are_the_online_teachers_on_the_same_views(tiny_aircraft, teacher_ckpt):
    online = build_training(config(tiny_aircraft, teacher_ckpt, *FIXED_VIEWS), verbose=False)
    cached = build_training(config(tiny_aircraft, teacher_ckpt, *FIXED_VIEWS, "--cache_teacher", "True"),
                            verbose=False)
    ms.load_param_into_net(cached.network, {p.name: ms.Parameter(p.asnumpy(), p.name)
                                           for p in online.network.get_parameters()})
    table = cached.teacher.cached_logits
    assert table.shape == (cached.train_data.size, len(CLASSES))
    (images, labels), (same_images, keys) = first_batch(online), first_batch(cached)
    assert np.array_equal(images.asnumpy(), same_images.asnumpy())
    keys = keys.asnumpy()
    assert np.array_equal(keys % len(CLASSES), labels.asnumpy())
    np.testing.assert_allclose(table[keys // len(CLASSES)], online.teacher.network(images).asnumpy(), atol=1e-5)
    np.testing.assert_allclose(float(cached.train_step(same_images, ms.Tensor(keys)).asnumpy()),
                               float(online.train_step(images, labels).asnumpy()), atol=1e-5)


@pytest.mark.parametrize("flags, needle", [
    (["--distill_alpha", "1.5"], "'distill_alpha' must be in [0, 1], got 1.5"),
    (["--distill_temperature", "0"], "'distill_temperature' must be > 0"),
    (["--teacher_ckpt", ""], "'teacher_model' and 'teacher_ckpt' go together: set teacher_ckpt"),
    (["--cache_teacher", "True"], "'cache_teacher: True' needs fixed training views, but 'scale' augments at random"),
    ([*FIXED_VIEWS, "--mixup", "0.2", "--cache_teacher", "True"], "but 'mixup' augments at random"),
    (["--freeze_backbone", "True", "--cache_features", "True"], "'teacher_model' cannot be used with 'cache_features'"),
    (["--task", "multilabel", "--loss", "bce", "--best_metric", "map"], "not available with 'task: multilabel'"),
])
def test_refused_settings_name_the_key(tiny_aircraft, teacher_ckpt, flags, needle):
    with pytest.raises(UsageError) as err:
        config(tiny_aircraft, teacher_ckpt, *flags)
    assert needle in str(err.value), str(err.value)
