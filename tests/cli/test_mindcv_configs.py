"""MindCV's own config files run unchanged; every accepted key acts or is declared without effect;
--dry_run; model failures in one line; loss scaling and clipping as MindCV means them, done right."""
import ast
import contextlib
import glob
import inspect
import io
import itertools
import os
import re
import subprocess
import sys
import textwrap

from conftest import ROOT, TINY_TRAIN_ARGS, assert_one_line_error, free_port, make_tiny_aircraft, run_main, run_script
from tools.core.config import LOSSES, NO_EFFECT, OPTIMIZERS, SCHEDULERS, no_effect_notes, option_table, parse_config
from tools.core.errors import UsageError

import mindspore as ms
import numpy as np
import pytest
import yaml
from mindspore import Tensor, nn
from PIL import Image

CONFIGS = sorted(glob.glob(os.path.join(ROOT, "tests", "mindcv_configs", "*.yaml")))
# the dry run builds each model: the light ones here (they cover 'ce', rexnet's weight init and MindCV's
# batch sizes); bench/walk_mindcv_configs.py walks all 179 files of MindCV's folder
DRY_RUN_CONFIGS = [p for p in CONFIGS if os.path.basename(p).startswith(("efficientnet", "mobilenet", "rexnet",
                                                                          "resnet_18"))]
SCRIPTS = ["finetune.py", "validate.py", "predict.py", "export.py"]


def write_yaml(path, text):
    path.write_text(textwrap.dedent(text))
    return str(path)


# ---- names and values as MindCV accepts them ---------------------------------------------------

def _names_compared_with(func, variable):
    """String constants that ``func``'s source compares ``variable`` against (``==`` / ``in [...]``)."""
    names = set()
    for node in ast.walk(ast.parse(textwrap.dedent(inspect.getsource(func)))):
        if isinstance(node, ast.Compare) and isinstance(node.left, ast.Name) and node.left.id == variable:
            names |= {c.value for comp in node.comparators for c in ast.walk(comp)
                      if isinstance(c, ast.Constant) and isinstance(c.value, str)}
    return names


def test_accepted_names_are_exactly_mindcvs_factories():
    from mindcv.loss import create_loss
    from mindcv.optim import create_optimizer
    from mindcv.scheduler import create_scheduler

    assert set(OPTIMIZERS) == _names_compared_with(create_optimizer, "opt")
    assert set(LOSSES) == _names_compared_with(create_loss, "name")
    assert set(SCHEDULERS) == _names_compared_with(create_scheduler, "scheduler")


@pytest.mark.parametrize("key,given,stored", [
    ("loss", "ce", "ce"), ("loss", "CE", "ce"), ("opt", "SGD", "sgd"), ("opt", "AdamW", "adamw"),
    ("scheduler", "warmup_cosine_decay", "warmup_cosine_decay"), ("interpolation", "BICUBIC", "bicubic"),
    ("loss_scale_type", "Dynamic", "dynamic")])
def test_mindcv_names_in_any_case(tmp_path, key, given, stored):
    assert getattr(parse_config(["--config", write_yaml(tmp_path / "c.yaml", f"{key}: '{given}'\n")], "t"),
                   key) == stored


def test_color_jitter_one_three_or_four_values(tmp_path):
    assert parse_config(["--color_jitter", "0.3"], "t").color_jitter == 0.3
    assert parse_config(["--color_jitter", "0.4", "0.4", "0.4"], "t").color_jitter == [0.4, 0.4, 0.4]
    cfg = parse_config(["--config", write_yaml(tmp_path / "c.yaml", "color_jitter: [0.4, 0.3, 0.2, 0.1]\n")], "t")
    assert cfg.color_jitter == [0.4, 0.3, 0.2, 0.1]
    with pytest.raises(UsageError, match=r"c2.yaml:1: bad value \[0.4, 0.4\] for 'color_jitter'.*3 or 4"):
        parse_config(["--config", write_yaml(tmp_path / "c2.yaml", "color_jitter: [0.4, 0.4]\n")], "t")


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_mindcv_config_files_are_accepted_unchanged(path):
    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    cfg = parse_config(["--config", path, "--num_classes", "100"], "t")
    assert cfg.model == raw["model"] and cfg.lr == raw["lr"] and cfg.batch_size == raw["batch_size"]
    assert cfg.scheduler == raw["scheduler"].lower() and cfg.opt == raw["opt"].lower()


# ---- precedence holds for values: validate the merged result once --------------------------------

def test_flag_rescues_a_bad_yaml_value_and_errors_name_where(tmp_path):
    bad = write_yaml(tmp_path / "bad.yaml", "lr: 0.1\nloss: 'focal'\n")
    with pytest.raises(UsageError, match=r"bad.yaml:2: bad value 'focal' for 'loss'"):
        parse_config(["--config", bad], "t")
    assert parse_config(["--config", bad, "--loss", "CE"], "t").loss == "ce"
    with pytest.raises(UsageError, match=r"flag --opt: bad value 'adamm' for 'opt'"):
        parse_config(["--opt", "adamm"], "t")
    with pytest.raises(UsageError, match=r"'lr' must be >= 0 and finite, got -1.0 \(.*neg.yaml:1\)"):
        parse_config(["--config", write_yaml(tmp_path / "neg.yaml", "lr: -1\n")], "t")
    assert parse_config(["--config", str(tmp_path / "neg.yaml"), "--lr", "0.5"], "t").lr == 0.5


def test_base_wrapper_rescues_a_bad_value(tmp_path):
    write_yaml(tmp_path / "base.yaml", "batch_size: 0\nscheduler: 'cosine'\nmodel: resnet18\n")
    wrapper = write_yaml(tmp_path / "wrap.yaml", "_base_: base.yaml\nbatch_size: 4\nscheduler: cosine_decay\n")
    cfg = parse_config(["--config", wrapper], "t")
    assert (cfg.batch_size, cfg.scheduler, cfg.model) == (4, "cosine_decay", "resnet18")
    with pytest.raises(UsageError, match=r"base.yaml:2: bad value 'cosine' for 'scheduler'"):
        parse_config(["--config", str(tmp_path / "base.yaml")], "t")


def test_duplicate_key_and_non_text_config_are_one_line_errors(tmp_path):
    with pytest.raises(UsageError, match=r"dup.yaml:3: key 'lr' is given twice \(first on line 1\)"):
        parse_config(["--config", write_yaml(tmp_path / "dup.yaml", "lr: 0.1\nseed: 1\nlr: 0.2\n")], "t")
    binary = tmp_path / "weights.ckpt"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(UsageError, match=r"weights.ckpt: not a UTF-8 YAML text file"):
        parse_config(["--config", str(binary)], "t")


# ---- no key accepted and ignored in silence ------------------------------------------------------

def _code():
    paths = [os.path.join(ROOT, s) for s in SCRIPTS] + glob.glob(os.path.join(ROOT, "tools", "**", "*.py"),
                                                                 recursive=True)
    return "\n".join(open(p, encoding="utf-8").read() for p in paths
                     if not p.endswith(os.path.join("tools", "core", "config.py")))


def test_every_key_is_read_by_the_code_or_declared_without_effect():
    code = _code()

    def read(key):
        return re.search(rf"\bcfg\.{key}\b|getattr\(cfg, \"{key}\"", code) or re.search(rf"[\"']{key}[\"']", code)

    assert [k for k in option_table() if k not in NO_EFFECT and not read(k)] == []
    assert [k for k in NO_EFFECT if k not in option_table() or re.search(rf"\bcfg\.{k}\b", code)] == []


def test_a_no_effect_key_set_away_from_its_default_gets_one_note():
    assert no_effect_notes(parse_config([], "t")) == []
    notes = no_effect_notes(parse_config(["--dataset_download", "True", "--data_url", "/x"], "t"))
    assert len(notes) == 2 and notes[0].startswith("dataset_download: True has no effect here")


# ---- --dry_run -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hundred_classes(tmp_path_factory):
    """An Aircraft-layout folder with 100 classes, 6 train + 1 val images each (16 px), enough for
    MindCV's batch sizes up to 512."""
    out = tmp_path_factory.mktemp("hundred")
    os.makedirs(out / "images")
    rng = np.random.default_rng(0)
    names = [f"Variant {k:02d}" + ("/B" if k % 10 == 3 else "") for k in range(100)]
    lines = {"train": [], "val": []}
    for n in range(700):
        image_id = f"{1000000 + n:07d}"
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(out / "images" / f"{image_id}.jpg")
        lines["train" if n < 600 else "val"].append(f"{image_id} {names[n % 100]}\n")
    for split, rows in lines.items():
        (out / f"images_variant_{split}.txt").write_text("".join(rows), encoding="utf-8")
    (out / "variants.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    return str(out)


@pytest.mark.parametrize("path", DRY_RUN_CONFIGS, ids=os.path.basename)
def test_dry_run_of_mindcv_configs(hundred_classes, tmp_path, path):
    """The issue's command, in-process: resolves, checks the data, builds everything, prints the plan,
    writes nothing. rexnet (MindSpore 2.7.2 refuses MindCV's weight init) builds too."""
    import finetune

    out = tmp_path / "never"
    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    buffer, mode = io.StringIO(), ms.get_context("mode")
    try:
        with contextlib.redirect_stdout(buffer):
            code = finetune.main(["--config", path, "--data_dir", hundred_classes, "--num_classes", "100",
                                  "--pretrained", "False", "--dry_run", "True", "--ckpt_save_dir", str(out)])
    finally:
        ms.set_context(mode=mode)
    lines = buffer.getvalue()
    assert code == 0
    assert "classes: 100 (Variant 00, Variant 01" in lines
    steps = 600 // raw["batch_size"]
    assert f"{steps} steps/epoch x {raw['epoch_size']} epochs = {steps * raw['epoch_size']} steps" in lines
    assert "dry run: nothing trained or written" in lines and not out.exists()


def test_dry_run_as_a_user_types_it(tiny_aircraft, tmp_path):
    proc = run_script("finetune.py", "--data_dir", tiny_aircraft, *TINY_TRAIN_ARGS, "--dry_run", "True",
                      "--ckpt_save_dir", tmp_path / "out", "--dataset_download", "True", "--freeze_layers", "7")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout.count("note: dataset_download: True has no effect here") == 1
    assert "parameter groups:" in proc.stdout and "frozen " in proc.stdout and "5 steps/epoch" in proc.stdout
    assert not (tmp_path / "out").exists()


# ---- every model builds or fails in one line -----------------------------------------------------

def test_model_limits_are_one_line_errors(tiny_aircraft, tmp_path):
    proc = run_main("finetune.py", "--data_dir", tiny_aircraft, *TINY_TRAIN_ARGS, "--model", "swin_tiny",
                    "--image_resize", "64", "--dry_run", "True")
    assert_one_line_error(proc, "model swin_tiny cannot take 64x64 images", code=1)
    proc = run_main("finetune.py", "--data_dir", tiny_aircraft, *TINY_TRAIN_ARGS, "--model", "resnet18",
                    "--in_channels", "0", "--dry_run", "True")
    assert_one_line_error(proc, "model resnet18 cannot be built here", code=1)
    proc = run_main("finetune.py", "--data_dir", tiny_aircraft, *TINY_TRAIN_ARGS, "--model", "halonet_50t",
                    "--image_resize", "224", "--dry_run", "True")   # its blocks of 8 need a multiple of 256 px
    assert_one_line_error(proc, "model halonet_50t cannot take 224x224 images (image_resize 224; it was trained at "
                          "256 px): fmap dimensions must be divisible", code=1)


def test_mindspore_errors_are_cut_to_their_informative_line():
    from tools.core.fileio import first_line

    message = ("\n----------------------------------------------------\n- Kernel select failed:\n"
               "----------------------------------------------------\nUnsupported op [ExtractImagePatches] on CPU, "
               "Please confirm whether the device target setting is correct\nnode: ...")
    assert first_line(RuntimeError(message)).startswith("Unsupported op [ExtractImagePatches] on CPU")
    assert first_line(ValueError("")) == "ValueError"


# ---- loss scaling as MindCV means it, on CPU too -------------------------------------------------

def _step(mode, **cfg):
    import argparse

    from tools.train.train_step import build_train_step

    ms.set_context(mode=mode)
    defaults = dict(amp_level="O0", amp_cast_list=None, loss_scale=1024.0, ema=False, ema_decay=0.9, clip_grad=False,
                    clip_value=15.0, gradient_accumulation_steps=1, drop_overflow_update=False,
                    loss_scale_type="fixed")
    net = nn.Dense(4, 3)
    step = build_train_step(argparse.Namespace(**{**defaults, **cfg}), net,
                            nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"),
                            nn.SGD(net.trainable_params(), 0.1))
    return net, step


@pytest.mark.parametrize("mode", [0, 1], indirect=True)
@pytest.mark.parametrize("kind,drop,skips", [("dynamic", True, True), ("fixed", True, True), ("fixed", False, False)])
def test_overflowed_steps_are_skipped_and_dynamic_scale_halves(mode, kind, drop, skips):
    net, step = _step(mode, loss_scale_type=kind, drop_overflow_update=drop)
    labels = Tensor(np.array([0, 1, 2, 0], np.int32))
    initial = net.weight.asnumpy().copy()
    step(Tensor(np.ones((4, 4), np.float32)), labels)
    before = net.weight.asnumpy().copy()
    assert not np.array_equal(initial, before)  # a finite step trains
    step(Tensor(np.full((4, 4), 3e38, np.float32)), labels)  # gradients overflow
    after = net.weight.asnumpy()
    assert np.array_equal(before, after) == skips
    assert float(step.scale_sense.asnumpy()) == (512.0 if kind == "dynamic" else 1024.0)


@pytest.mark.parametrize("mode", [0, 1], indirect=True)
def test_plain_step_trains_bitwise_as_mindcvs_train_step(mode):
    """With nothing to scale, clip, average or accumulate the suite runs the bare step (faster on CPU,
    bench/README.md section 1): the weights after 3 steps equal MindCV's TrainStep's (scale 1) bit for bit."""
    from mindcv.utils.train_step import TrainStep
    from mindcv.utils.trainer_factory import add_loss_network

    net, step = _step(mode, loss_scale=1.0)
    assert step.plain
    twin = nn.Dense(4, 3)
    ms.load_param_into_net(twin, {name: ms.Parameter(p.asnumpy().copy(), name=name)
                                  for name, p in net.parameters_and_names()})
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    mindcv_step = TrainStep(add_loss_network(twin, loss, "O0"), nn.SGD(twin.trainable_params(), 0.1),
                            Tensor(1.0, ms.float32)).set_train()
    rng = np.random.default_rng(0)
    initial = net.weight.asnumpy().copy()
    for _ in range(3):
        images, labels = (Tensor(rng.standard_normal((4, 4)).astype(np.float32)),
                          Tensor(rng.integers(0, 3, 4).astype(np.int32)))
        assert np.array_equal(step(images, labels).asnumpy(), mindcv_step(images, labels).asnumpy())
    assert not np.array_equal(initial, net.weight.asnumpy())
    assert np.array_equal(net.weight.asnumpy(), twin.weight.asnumpy())
    assert np.array_equal(net.bias.asnumpy(), twin.bias.asnumpy())
    for other in (dict(loss_scale=1024.0), dict(loss_scale=1.0, ema=True), dict(loss_scale=1.0, clip_grad=True),
                  dict(loss_scale=1.0, loss_scale_type="dynamic"), dict(loss_scale=1.0, drop_overflow_update=True),
                  dict(loss_scale=1.0, gradient_accumulation_steps=2)):
        assert not _step(mode, **other)[1].plain, other


def test_resume_continues_a_dynamic_loss_scale_where_it_was(tmp_path):
    """A huge initial scale overflows and halves at every step of epoch 1: a resumed epoch 2 must go on from
    the halved scale (else it skips steps again and its weights differ from the uninterrupted run's). Two steps
    an epoch (20 images): epoch 1's two overflows bring the scale to where epoch 2's steps fit."""
    data = make_tiny_aircraft(str(tmp_path / "data"), per_class={"trainval": 4, "test": 1})
    args = [*TINY_TRAIN_ARGS, "--mode", "1", "--model", "resnet18", "--opt", "momentum", "--loss_scale_type",
            "dynamic", "--loss_scale", "1e38", "--drop_overflow_update", "True",
            "--scheduler", "constant"]  # the lr must not depend on epoch_size: the run is cut by epoch_size

    def train(out, epochs, *more):
        proc = run_script("finetune.py", "--data_dir", data, *args, "--epoch_size", epochs, "--ckpt_save_dir",
                          out, *more)
        assert proc.returncode == 0, proc.stderr
        return {k: v.asnumpy() for k, v in ms.load_checkpoint(str(out / "resnet18_last.ckpt")).items()
                if hasattr(v, "asnumpy")}

    whole = train(tmp_path / "whole", "2")
    train(tmp_path / "parts", "1")
    # named: a run that ended (summary.json) is only extended when its state is named
    resumed = train(tmp_path / "parts", "2", "--resume", tmp_path / "parts" / "resume.ckpt")
    scale = ms.load_checkpoint(str(tmp_path / "parts" / "resume.ckpt"))["scale_sense"].asnumpy()
    assert float(scale) <= 1e38 / 4  # it halved on the first steps (until the scaled gradients fit float32)
    assert whole.keys() == resumed.keys() and all(np.array_equal(whole[k], resumed[k]) for k in whole)


# ---- data parallel with clipping: clip after the mean ----------------------------------------------

def test_msrun_clipping_equals_one_process_on_the_global_batch(tmp_path):
    worker = os.path.join(ROOT, "tests", "clip_worker.py")
    env = dict(os.environ, GLOG_v="3", PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    one = subprocess.run([sys.executable, worker, str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    (tmp_path / "dp").mkdir()
    cmd = ["msrun", "--worker_num=2", "--local_worker_num=2", f"--master_port={free_port()}",
           f"--log_dir={tmp_path / 'logs'}", "--join=True", worker, str(tmp_path / "dp")]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:]
    single = np.load(tmp_path / "suite_0.npy")
    ranks = [np.load(tmp_path / "dp" / f"suite_{r}.npy") for r in (0, 1)]
    assert np.array_equal(ranks[0], ranks[1])
    np.testing.assert_allclose(ranks[0], single, rtol=1e-5, atol=1e-6)
    # MindCV's TrainStep clips each worker's gradient before the mean: not what one process does
    mindcv = np.load(tmp_path / "dp" / "mindcv_0.npy")
    assert np.abs(mindcv - np.load(tmp_path / "mindcv_0.npy")).max() > 1e-4


# ---- aug_repeats: MindCV's repeated augmentation, reproducible per epoch ---------------------------

def test_aug_repeats_shows_each_image_n_times_in_an_order_fixed_by_the_epoch_seed(tiny_aircraft):
    import hashlib

    from tools.datasets.loader import open_split

    import mindspore.dataset as ds

    cfg = parse_config(["--data_dir", tiny_aircraft, "--train_split", "trainval", "--aug_repeats", "3"], "t")
    split = open_split(cfg, "trainval", training=True)

    def order(seed):
        ds.config.set_seed(seed)
        return [(hashlib.sha1(image.tobytes()).hexdigest(), int(index))
                for image, _, index in split.dataset.create_tuple_iterator(num_epochs=1, output_numpy=True)]

    first = order(43)
    assert len(first) == split.size == 40  # an epoch keeps its length, as in MindCV
    runs = [first[i:i + 3] for i in range(0, 39, 3)]
    assert all(len({image for image, _ in run}) == 1 for run in runs) and len({image for image, _ in first}) == 14
    # each repeat has its own augmentation seed: index r * 40 + i for repeat r of image i
    assert all([index // 40 for _, index in run] == [0, 1, 2] and len({index % 40 for _, index in run}) == 1
               for run in runs)
    assert order(43) == first and order(44) != first
    with pytest.raises(UsageError, match="'aug_repeats' and 'num_samples'"):
        parse_config(["--aug_repeats", "3", "--num_samples", "8"], "t")


def test_pvt_builds_and_trains_at_its_size():
    """MindCV 0.3.0's PVT calls ``ops.ResizeBilinear`` (gone in MindSpore 2.7.2) in every stage after the first,
    and keeps float16 position embeddings that an AdamW step turned NaN: both fixed in tools/models/mindcv_fixes.py."""
    from tools.models.factory import create_network

    from mindcv.loss import create_loss
    from mindcv.optim import create_optimizer

    ms.set_context(mode=ms.PYNATIVE_MODE)
    cfg = parse_config(["--model", "pvt_tiny", "--pretrained", "False", "--num_classes", "3"], "test")
    network = create_network(cfg, 3)
    assert {str(p.dtype) for p in network.get_parameters()} == {"Float32"}
    step = nn.TrainOneStepCell(nn.WithLossCell(network, create_loss("ce")),
                               create_optimizer(network.trainable_params(), "adamw", lr=5e-4, weight_decay=0.0))
    rng = np.random.default_rng(0)
    images = Tensor(rng.random((2, 3, 224, 224), np.float32))
    labels = Tensor(np.array([0, 2], np.int32))
    before = network.pos_embed2.asnumpy().copy()
    losses = [float(step(images, labels).asnumpy()) for _ in range(3)]
    assert all(np.isfinite(losses)), losses
    assert not np.array_equal(network.pos_embed2.asnumpy(), before)   # the embeddings train


def _image_patches_reference(x, ksizes, strides, rates, padding):
    """``ExtractImagePatches`` of NCHW ``x`` in NumPy, element by element, as MindSpore computes it elsewhere (its
    docs give only the "valid" size): output sizes as its C++ shape inference ("same": (size - 1) // stride + 1),
    channels and the "same" split as its GPU kernel (TensorFlow's NHWC patches between two transposes, half the
    padding, rounded down, before): channel (i * kw + j) * C + c of patch (r, q) is
    x[c, r * stride + i * rate - before, ...], 0 outside."""
    (kh, kw), (sh, sw), (rh, rw) = ksizes, strides, rates
    batch, channels, height, width = x.shape
    extent_h, extent_w = (kh - 1) * rh + 1, (kw - 1) * rw + 1
    if padding == "same":
        out_h, out_w = -(-height // sh), -(-width // sw)
        top = max((out_h - 1) * sh + extent_h - height, 0) // 2
        left = max((out_w - 1) * sw + extent_w - width, 0) // 2
    else:
        out_h, out_w, top, left = (height - extent_h) // sh + 1, (width - extent_w) // sw + 1, 0, 0
    out = np.zeros((batch, kh * kw * channels, out_h, out_w), x.dtype)
    for i, j, c, r, q in itertools.product(range(kh), range(kw), range(channels), range(out_h), range(out_w)):
        row, col = r * sh + i * rh - top, q * sw + j * rw - left
        if 0 <= row < height and 0 <= col < width:
            out[:, (i * kw + j) * channels + c, r, q] = x[:, c, row, col]
    return out


class _WeightedSum(nn.Cell):
    def __init__(self, cell, weights):
        super().__init__()
        self.cell, self.weights = cell, Tensor(weights)

    def construct(self, x):
        return (self.cell(x) * self.weights).sum()


@pytest.mark.parametrize("mode", [0, 1], indirect=True, ids=["graph", "pynative"])
def test_unfold_on_cpu_extracts_the_patches_of_extract_image_patches(mode):
    """``nn.Unfold`` (``ExtractImagePatches``, no CPU kernel) runs on CPU by tools.models.mindcv_fixes.extract_patches:
    the op's values, and as gradient the transpose of that linear map."""
    from tools.models.mindcv_fixes import install_cpu_unfold

    install_cpu_unfold()
    rng = np.random.default_rng(0)
    for ksizes, strides, rates, padding, shape in [
            ((3, 3), (1, 1), (1, 1), "valid", (2, 3, 7, 8)), ((3, 2), (3, 2), (2, 1), "same", (1, 4, 10, 7)),
            ((1, 1), (3, 3), (1, 1), "same", (1, 2, 5, 5)), ((4, 4), (2, 3), (2, 2), "valid", (1, 3, 12, 13)),
            ((14, 14), (8, 8), (1, 1), "valid", (1, 2, 22, 30)), ((2, 3), (2, 1), (1, 2), "same", (1, 2, 7, 9))]:
        x = rng.standard_normal(shape).astype(np.float32)
        unfold = nn.Unfold([1, *ksizes, 1], [1, *strides, 1], [1, *rates, 1], padding)
        expected = _image_patches_reference(x, ksizes, strides, rates, padding)
        assert np.array_equal(unfold(Tensor(x)).asnumpy(), expected), (ksizes, strides, rates, padding)
    weights = rng.standard_normal(expected.shape).astype(np.float32)
    grad = ms.grad(_WeightedSum(unfold, weights))(Tensor(x)).asnumpy()
    pixels = np.eye(x.size, dtype=np.float32).reshape(x.size, *x.shape)
    transpose = [(_image_patches_reference(e, ksizes, strides, rates, padding) * weights).sum() for e in pixels]
    np.testing.assert_allclose(grad.ravel(), transpose, rtol=1e-5, atol=1e-5)


def test_volo_trains_at_its_size():
    """MindCV 0.3.0's VOLO pads in MindSpore 1.x's form (((0, 0), (0, 0), (1, 1), (1, 1)): TypeError in 2.7.2),
    unfolds with ``ExtractImagePatches`` (no CPU kernel) and folds with a float16 weight that Conv2DTranspose
    refuses beside float32 inputs: all three worked around in tools/models/mindcv_fixes.py (HaloNet shares the first
    two)."""
    from tools.models.mindcv_fixes import create_model_fixed

    from mindcv.loss import create_loss
    from mindcv.optim import create_optimizer

    ms.set_context(mode=ms.PYNATIVE_MODE)
    network = create_model_fixed(model_name="volo_d1", num_classes=3)
    step = nn.TrainOneStepCell(nn.WithLossCell(network, create_loss("ce")),
                               create_optimizer(network.trainable_params(), "adamw", lr=5e-4, weight_decay=0.0))
    images = Tensor(np.random.default_rng(0).random((1, 3, 224, 224), np.float32))
    unfolded = network.network[0][0].attn.v.weight   # feeds the unfold: trains only if gradients pass it
    before = unfolded.asnumpy().copy()
    losses = [float(step(images, Tensor(np.array([2], np.int32))).asnumpy()) for _ in range(2)]
    assert all(np.isfinite(losses)), losses
    assert not np.array_equal(unfolded.asnumpy(), before)


def test_halonet_trains_at_its_size():
    """HaloNet pads with ``paddings=`` in MindSpore 1.x's pairs and unfolds with ``ExtractImagePatches``: both
    fixed in tools/models/mindcv_fixes.py; it needs a multiple of 256 px (below, a one-line limit)."""
    from tools.models.mindcv_fixes import create_model_fixed

    from mindcv.loss import create_loss
    from mindcv.optim import create_optimizer

    ms.set_context(mode=ms.PYNATIVE_MODE)
    network = create_model_fixed(model_name="halonet_50t", num_classes=3)
    step = nn.TrainOneStepCell(nn.WithLossCell(network, create_loss("ce")),
                               create_optimizer(network.trainable_params(), "adamw", lr=5e-4, weight_decay=0.0))
    before = {p.name: p.asnumpy().copy() for p in network.trainable_params()}
    images = Tensor(np.random.default_rng(0).random((1, 3, 256, 256), np.float32))
    losses = [float(step(images, Tensor(np.array([1], np.int32))).asnumpy()) for _ in range(2)]
    assert all(np.isfinite(losses)), losses
    changed = [name for name, value in before.items() if not np.array_equal(network.parameters_dict()[name].asnumpy(),
                                                                            value)]
    assert len(changed) == len(before)          # gradients reach every weight, through the unfolds too
