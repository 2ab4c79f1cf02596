"""tools/deploy/quantize.py: the int8 file is written and runs in ONNX Runtime, and the figures it reports (Top-1 of
both files, their agreement, sizes) are what the two files compute on the split; the int8 file finds the float
file's metadata."""
import json
import os

from conftest import TINY_CLASSES
from tools.core.config import parse_config
from tools.core.errors import UsageError
from tools.deploy import quantize
from tools.evaluate import exported, onnx_export
from tools.models.mindcv_fixes import create_model_fixed

import mindspore as ms
import numpy as np
import pytest


@pytest.fixture(scope="module")
def float_onnx(tmp_path_factory, tiny_aircraft):
    """A MobileNetV3-small (5 classes, 32 px, random weights) exported to ONNX, and the configuration of the tiny
    data it runs on."""
    from export import EXTRA

    cfg = parse_config(["--data_dir", tiny_aircraft, "--val_split", "test", "--image_resize", "32", "--crop_pct", "1.0",
                        "--dataset", "", "--num_parallel_workers", "1", "--calibration_count", "8"], "t", extra=EXTRA)
    network = create_model_fixed(model_name="mobilenet_v3_small_100", num_classes=len(TINY_CLASSES), pretrained=False)
    network.set_train(False)
    base = str(tmp_path_factory.mktemp("int8") / "model")
    with onnx_export.exportable(network):
        ms.export(network, ms.Tensor(np.zeros((1, 3, 32, 32), np.float32)), file_name=base, file_format="ONNX")
    return cfg, base + ".onnx"


def split_logits(cfg, path, class_names):
    """Logits of ``path`` on every image of val_split, in split order, and the labels (as validate.py reads them)."""
    from tools.datasets.loader import build_loader, open_split
    from tools.evaluate.inference import predict_logits

    data = open_split(cfg, cfg.val_split, class_names=class_names)
    loader = build_loader(cfg, data, len(class_names), training=False, batch_size=1)
    return predict_logits(exported.load_model(path), loader, 1)


def test_the_int8_file_runs_and_its_figures_are_recomputed(float_onnx, capsys):
    import onnx

    cfg, float_path = float_onnx
    data = quantize.validation_split(cfg, None)
    result = quantize.write_int8(cfg, float_path, data)
    int8 = quantize.int8_path(float_path)
    assert int8 == float_path[:-len(".onnx")] + ".int8.onnx" and result["file"] == "model.int8.onnx"
    graph = onnx.load(int8).graph
    assert sum(node.op_type == "QuantizeLinear" for node in graph.node) > 10
    kernels = [init for init in graph.initializer if init.data_type == onnx.TensorProto.INT8 and len(init.dims) == 4]
    assert kernels, "no int8 convolution weights"
    float_logits, labels = split_logits(cfg, float_path, data.class_names)
    int8_logits, _ = split_logits(cfg, int8, data.class_names)
    assert result["num_samples"] == len(labels) == 4 * len(TINY_CLASSES)
    assert result["top1_float"] == float(np.mean(float_logits.argmax(1) == labels))
    assert result["top1_int8"] == float(np.mean(int8_logits.argmax(1) == labels))
    assert result["agreement"] == float(np.mean(float_logits.argmax(1) == int8_logits.argmax(1)))
    assert not np.array_equal(float_logits, int8_logits)       # really another graph
    assert result["size_bytes_float"] == os.path.getsize(float_path)
    assert result["size_bytes_int8"] == os.path.getsize(int8) < result["size_bytes_float"]
    assert result["calibration_images"] == 8 and result["latency_ms_int8"] > 0 and result["latency_ms_float"] > 0
    block = capsys.readouterr().out
    assert f"agreement   {result['agreement']:.4f}" in block and f"int8 {result['top1_int8']:.4f}" in block


def test_a_figure_is_the_share_of_argmax_matches():
    logits_a = np.array([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0], [1.0, 3.0, 0.0], [5.0, 0.0, 0.0]])
    logits_b = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 2.0], [1.0, 3.0, 0.0], [0.0, 0.0, 5.0]])
    assert quantize.figures(logits_a, logits_b, np.array([0, 2, 0, 0])) == {
        "num_samples": 4, "top1_float": 0.75, "top1_int8": 0.25, "agreement": 0.5}


def test_calibration_images_are_spread_over_the_split():
    paths = [f"{i}.jpg" for i in range(100)]
    assert quantize.spread_over(paths, 5) == ["0.jpg", "25.jpg", "50.jpg", "74.jpg", "99.jpg"]
    assert quantize.spread_over(paths[:3], 64) == paths[:3]


def test_the_int8_file_reads_the_float_files_metadata(tmp_path):
    assert exported.metadata_path(os.path.join("out", "model.int8.onnx")) == os.path.join("out", "model.classes.json")
    assert exported.metadata_path(os.path.join("out", "model.onnx")) == os.path.join("out", "model.classes.json")
    assert exported.metadata_path("model.mindir") == "model.classes.json"
    (tmp_path / "model.int8.onnx").write_bytes(b"")
    (tmp_path / "model.classes.json").write_text(json.dumps({"class_names": ["a", "b"], "input_shape": [1, 3, 8, 8]}))
    assert exported.read_metadata(str(tmp_path / "model.int8.onnx"))["class_names"] == ["a", "b"]


def test_a_missing_validation_split_is_refused(float_onnx):
    cfg, _ = float_onnx
    cfg = parse_config(["--data_dir", cfg.data_dir, "--val_split", "nosuchsplit", "--dataset", ""], "t")
    with pytest.raises(UsageError, match="--quantize int8 calibrates and measures on val_split 'nosuchsplit'"):
        quantize.validation_split(cfg, None)
