"""Fine-tuning techniques from config alone: weights, freezing, lr groups, resume, early stop, EMA, msrun."""
import os
import re
import subprocess
import sys

from conftest import ROOT, TINY_TRAIN_ARGS, assert_one_line_error, free_port, run_main, run_script
from tools.core.config import parse_config
from tools.train.optimizer import build_optimizer

import mindspore as ms
import numpy as np
import pytest
from mindcv.models import create_model

MODEL = "mobilenet_v3_small_100"
ARGS = [*TINY_TRAIN_ARGS, "--opt", "momentum"]  # AdamW's first PyNative step compiles ~20 s longer on mobilenet
MODES = os.path.join(ROOT, "configs", "mobilenetv3", "aircraft_modes")


def weights(path):
    """``{name: numpy array}`` of a checkpoint's tensors."""
    return {k: v.asnumpy() for k, v in ms.load_checkpoint(str(path)).items() if hasattr(v, "asnumpy")}


@pytest.fixture(scope="module")
def init_ckpt(tmp_path_factory):
    """A mobilenet_v3_small checkpoint with a 1000-class head and optimizer-like entries shaped like it."""
    path = str(tmp_path_factory.mktemp("init") / "imagenet_like.ckpt")
    ms.set_seed(3)
    net = create_model(MODEL, num_classes=1000)
    extra = [{"name": "adam_m.classifier.3.weight", "data": ms.Tensor(np.zeros((1000, 1024), np.float32))},
             {"name": "global_step", "data": ms.Tensor(np.array([7], np.int32))}]
    ms.save_checkpoint(net, path)
    params = ms.load_checkpoint(path)
    ms.save_checkpoint([{"name": k, "data": v} for k, v in params.items()] + extra, path)
    del net
    return path


def finetune(data, out, *args):
    proc = run_script("finetune.py", "--data_dir", data, *ARGS, "--ckpt_save_dir", out, *args)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_thousand_class_checkpoint_initialises_without_stripping(tiny_aircraft, tmp_path, init_ckpt):
    proc = finetune(tiny_aircraft, tmp_path, "--ckpt_path", init_ckpt, "--epoch_size", "1", "--lr", "0",
                    "--min_lr", "0", "--mode", "1")
    assert "2 classifier tensors dropped" in proc.stdout
    before, after = weights(init_ckpt), weights(tmp_path / f"{MODEL}_last.ckpt")
    assert after["classifier.3.weight"].shape == (5, 1024)
    for name in ("features.0.weight", "features.9.layers.0.weight", "classifier.0.weight"):
        assert np.array_equal(before[name], after[name]), name          # loaded, and lr 0 kept them


def test_checkpoint_of_another_architecture_is_refused(tiny_aircraft, tmp_path):
    path = str(tmp_path / "resnet18.ckpt")
    net = create_model("resnet18", num_classes=10)
    ms.save_checkpoint(net, path)
    del net
    proc = run_main("finetune.py", "--data_dir", tiny_aircraft, *TINY_TRAIN_ARGS, "--ckpt_path", path,
                    "--ckpt_save_dir", tmp_path / "o")
    assert_one_line_error(proc, path, "another architecture", code=1)


def test_freeze_first_7_keeps_frozen_weights_and_bn_stats_bitwise(tiny_aircraft, tmp_path, init_ckpt):
    proc = finetune(tiny_aircraft, tmp_path, "--ckpt_path", init_ckpt, "--freeze_layers", "7", "--epoch_size", "1",
                    "--mode", "1")
    assert re.search(r"trainable [\d,]+ params", proc.stdout), proc.stdout
    before, after = weights(init_ckpt), weights(tmp_path / f"{MODEL}_last.ckpt")
    frozen = [n for n in after if re.match(r"features\.[0-6]\.", n)]
    assert any(n.endswith("moving_mean") for n in frozen)
    for name in frozen:
        assert np.array_equal(before[name], after[name]), name
    changed = [n for n in after if n.startswith(("features.10.", "features.12.")) and not n.endswith("moving_variance")
               and not np.array_equal(before[n], after[n])]
    assert changed, "features.1x must stay trainable (no substring match with features.1)"


def test_group_table_and_layer_lr_from_cli(capsys):
    cfg = parse_config([*TINY_TRAIN_ARGS, "--lr_mult", "classifier=1.2", "features.13=1.05",
                        "--weight_decay_filter", "norm_and_bias"], "t")
    build_optimizer(cfg, create_model(MODEL, num_classes=5), [cfg.lr] * 5)      # as finetune.py builds it
    table = capsys.readouterr().out.split("parameter groups:")[1]
    assert "classifier" in table and "features.13" in table and "1.2" in table and "1.05" in table


def test_resume_missing_path_is_one_line(tiny_aircraft, tmp_path):
    proc = run_main("finetune.py", "--data_dir", tiny_aircraft, *TINY_TRAIN_ARGS, "--resume",
                    tmp_path / "nope.ckpt", "--ckpt_save_dir", tmp_path)
    assert_one_line_error(proc, "nope.ckpt", code=1)


def test_early_stopping(tiny_aircraft, tmp_path):
    proc = finetune(tiny_aircraft, tmp_path, "--epoch_size", "5", "--lr", "0", "--min_lr", "0",
                    "--early_stop_patience", "1", "--mode", "1", "--model", "resnet18")
    assert "early stop" in proc.stdout
    assert "Exception ignored" not in proc.stderr and "total_instance_count" not in proc.stderr  # no exit noise
    assert len(open(tmp_path / "results.csv").read().splitlines()) == 1 + 2


def test_training_extras_run(tiny_aircraft, tmp_path):
    proc = finetune(tiny_aircraft, tmp_path, "--epoch_size", "1", "--mode", "1", "--model", "resnet18", "--ema", "True",
                    "--ema_decay", "0.5", "--clip_grad", "True", "--clip_value", "1", "--label_smoothing", "0.1",
                    "--gradient_accumulation_steps", "2")
    assert "only runs in GRAPH mode; using mode 0" in proc.stdout
    assert os.path.isfile(tmp_path / "resnet18_best.ckpt")
    # validation and checkpoints use the EMA weights, the resume state the live ones
    saved, live = weights(tmp_path / "resnet18_last.ckpt"), weights(tmp_path / "resume.ckpt")
    assert not [name for name in saved if name.startswith("optimizer.")]  # accumulation keeps the weight names
    assert not np.array_equal(saved["classifier.weight"], live["classifier.weight"])
    assert np.array_equal(saved["classifier.weight"], live["ema.classifier.weight"])


@pytest.mark.parametrize("mode", [0, 1], indirect=True)
def test_ema_keeps_an_unchanged_weight_bitwise_averages_the_trained_ones_and_training_goes_on(mode):
    """MindCV's ``ema * f + w * (1 - f)`` moves a frozen weight by rounding (reproduced: 3e-8 after 50
    steps); the suite's EMA leaves it bitwise equal and is still the same average of the trained weights."""
    from tools.evaluate.inference import ema_weights
    from tools.train.train_step import SuiteTrainStep

    from mindspore import Tensor, nn

    ms.set_context(mode=mode)
    ms.set_seed(1)
    net = nn.SequentialCell(nn.Dense(4, 8), nn.ReLU(), nn.Dense(8, 3))
    net[0].weight.requires_grad = net[0].bias.requires_grad = False
    frozen = net[0].weight.asnumpy().copy()
    decay = 0.9999
    step = SuiteTrainStep(nn.WithLossCell(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")),
                          nn.SGD(net.trainable_params(), 0.1), Tensor(1.0, ms.float32), ema=True,
                          ema_decay=decay).set_train()
    images = Tensor(np.random.RandomState(0).rand(4, 4).astype(np.float32) * 3)
    labels = Tensor(np.array([0, 1, 2, 0], np.int32))
    expected = net[2].weight.asnumpy().astype(np.float64)
    for t in range(1, 51):
        step(images, labels)
        factor = decay * (1 - np.exp(-t / 2000))
        expected = expected * factor + net[2].weight.asnumpy() * (1 - factor)
    ema = {p.name: p.asnumpy() for p in step.ema_weight}
    assert np.array_equal(ema["ema.0.weight"], frozen)
    assert not np.array_equal(ema["ema.2.weight"], net[2].weight.asnumpy())
    np.testing.assert_allclose(ema["ema.2.weight"], expected, rtol=1e-5, atol=1e-7)
    # validation swaps the EMA weights in and back; training must go on after it (with Parameter.set_data,
    # PyNative's step stopped updating the weights: epochs after the first trained nothing, silently)
    live = net[2].weight.asnumpy().copy()
    with ema_weights(step, True):
        assert np.array_equal(net[2].weight.asnumpy(), ema["ema.2.weight"])
    assert np.array_equal(net[2].weight.asnumpy(), live)
    step(images, labels)
    assert not np.array_equal(net[2].weight.asnumpy(), live)


@pytest.mark.parametrize("name,expect", [
    ("1_freeze_all.yaml", {"freeze_backbone": True}), ("2_freeze_first7.yaml", {"freeze_layers": 7}),
    ("3_full.yaml", {"freeze_layers": 0, "lr_mult": {}}), ("4_classifier_lr.yaml", {"lr_mult": {"classifier": 1.2}}),
    ("5_deep_lr.yaml", {"lr_mult": {"features.13": 1.05, "features.14": 1.1, "features.15": 1.15}})])
def test_mode_configs_extend_the_aircraft_config(name, expect):
    cfg = parse_config(["--config", os.path.join(MODES, name)], "t")
    assert cfg.image_resize == 600 and cfg.model == MODEL
    for key, value in expect.items():
        assert getattr(cfg, key) == value


def test_freeze_all_mode_runs_and_reports_head_only(tiny_aircraft, tmp_path):
    proc = finetune(tiny_aircraft, tmp_path, "--config", os.path.join(MODES, "1_freeze_all.yaml"),
                    "--pretrained", "False", "--num_classes", "5", "--auto_augment", "None", "--epoch_size", "1",
                    "--mode", "1")
    head = sum(p.size for p in create_model(MODEL, num_classes=5).get_parameters() if p.name.startswith("classifier"))
    assert f"trainable {head:,} params" in proc.stdout


def test_msrun_two_workers_end_identical(tiny_aircraft, tmp_path):
    """Data parallel on CPU: 2 workers, gradients averaged, identical weights, one set of outputs."""
    log_dir = tmp_path / "logs"
    env = dict(os.environ, GLOG_v="3", PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    cmd = ["msrun", "--worker_num=2", "--local_worker_num=2", f"--master_port={free_port()}",
           f"--log_dir={log_dir}", "--join=True", os.path.join(ROOT, "finetune.py"), "--data_dir", tiny_aircraft, *ARGS,
           "--distribute", "True", "--epoch_size", "1", "--mode", "1", "--model", "resnet18",
           "--ckpt_save_dir", str(tmp_path / "out")]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    logs = [open(log_dir / f"worker_{r}.log").read() for r in (0, 1)]
    assert proc.returncode == 0, logs
    digests = [re.search(r"rank (\d): final weights digest (\w+)", log).groups() for log in logs]
    assert {d[0] for d in digests} == {"0", "1"}
    assert digests[0][1] == digests[1][1]
    assert "steps/epoch" in logs[0] and "steps/epoch" not in logs[1]      # rank 0 alone reports and writes
    assert sorted(os.listdir(tmp_path / "out")) == sorted(
        [".run.lock", "config.yaml", "resume.ckpt", "results.csv", "results.txt", "training_curves.png",
         "resnet18-1.ckpt", "resnet18_best.ckpt", "resnet18_last.ckpt", "summary.json"])
