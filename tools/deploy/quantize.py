"""int8 quantisation of an exported ONNX file with ONNX Runtime, and what it costs (``export.py --quantize int8``).

Static quantisation, QDQ format, int8 weights per output channel, uint8 activations with MinMax ranges calibrated on
evaluation-preprocessed images of val_split (spread over the whole split). Chosen by measuring on the demo model
(MobileNetV2) and a MobileNetV3-small (README "int8"): per-tensor weights and dynamic quantisation both fell to chance
(Top-1 0.10) on the demo, dynamic also ran ~10x slower than float (ONNX Runtime's ConvInteger); QOperator kept what
QDQ kept; Percentile or Entropy calibration, all 200 images for calibration, symmetric or 16-bit activations kept
at most one point more agreement.
MindSpore writes opset 11, which has no per-channel DequantizeLinear: the graph is converted to opset 13 first, and
ONNX Runtime's pre-processing folds each BatchNorm into its convolution (quantised apart, they lose more).

The figures stored in the metadata (key ``int8``) and printed: Top-1 of the float and the int8 file on the whole
val_split, the share of images whose top-1 class is the same in both, the file sizes and the median latency of one
image (batch 1) in ONNX Runtime on this machine.
"""
import os
import statistics
import tempfile
import time

from tools.core.errors import DataError, UsageError
from tools.core.fileio import first_line
from tools.datasets.inputs import input_split
from tools.datasets.loader import build_loader, open_split
from tools.evaluate.exported import INT8_SUFFIX
from tools.evaluate.inference import batches
from tools.evaluate.onnx_export import OnnxRuntimeModel

import numpy as np

QDQ_OPSET = 13          # the first opset whose QuantizeLinear/DequantizeLinear take a per-channel axis
LATENCY_RUNS = 50       # one image, timed this many times per file: the median is reported
LATENCY_BLOCK = 10      # timed calls in a row, after WARMUP_RUNS untimed ones, before the other file's block
WARMUP_RUNS = 3
MODE = "static QDQ, int8 weights per channel, uint8 activations, MinMax calibration"


def int8_path(onnx_path):
    """``model.onnx`` -> ``model.int8.onnx`` (beside it; both read ``model.classes.json``)."""
    return os.path.splitext(onnx_path)[0] + INT8_SUFFIX


def check_request(cfg, formats):
    """Refuse (UsageError, exit 2) ``--quantize int8`` without an ONNX export among ``formats`` or a bad
    ``calibration_count``, before anything is read or written."""
    if "ONNX" not in formats:
        raise UsageError(f"--quantize int8 quantises the ONNX file: --format {cfg.format} writes none "
                         "(use --format ONNX or both)")
    if cfg.calibration_count < 1:
        raise UsageError(f"'calibration_count' must be > 0, got {cfg.calibration_count}")
    if getattr(cfg, "task", "single") != "single":
        raise UsageError(f"--quantize int8 reports Top-1 and top-1 agreement: not available with 'task: {cfg.task}' "
                         "(export without --quantize)")


def validation_split(cfg, class_names):
    """val_split, on which int8 is calibrated and compared with float; a missing or empty split is refused
    (UsageError, exit 2) before anything is written."""
    try:
        data = open_split(cfg, cfg.val_split, class_names=class_names)
    except DataError as err:
        raise UsageError(f"--quantize int8 calibrates and measures on val_split '{cfg.val_split}' of "
                         f"{cfg.data_dir}: {err}") from None
    if not data.size:
        raise UsageError(f"--quantize int8 calibrates and measures on val_split '{cfg.val_split}' of "
                         f"{cfg.data_dir}: it has no images")
    return data


def spread_over(paths, count):
    """``count`` of ``paths`` evenly spaced over the list (all when fewer): a split listed class by class would
    otherwise calibrate on its first classes only."""
    if count >= len(paths):
        return list(paths)
    return [paths[i] for i in np.linspace(0, len(paths) - 1, count).round().astype(int)]


def preprocessed(cfg, paths, class_names):
    """The images ``paths`` as the model takes them (the evaluation transforms), one (1, C, H, W) array each."""
    loader = build_loader(cfg, input_split(cfg, paths, class_names), len(class_names), training=False, batch_size=1)
    return [images for images, _ in batches(loader, output_numpy=True)]


def quantize_static_int8(float_path, out_path, images):
    """Write ``out_path``, the int8 version of ``float_path`` (see the module docstring for how), calibrated on
    ``images``. ``onnx`` is imported here, after MindSpore: imported first it breaks MindSpore's protobuf files."""
    import onnx
    from onnx import version_converter
    from onnxruntime import quantization

    class CalibrationImages(quantization.CalibrationDataReader):
        """The calibration images, one feed each, as ONNX Runtime's calibrator asks for them."""

        def __init__(self, input_name):
            self.feeds = iter([{input_name: image} for image in images])

        def get_next(self):
            return next(self.feeds, None)

    model = onnx.load(float_path)
    input_name = model.graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="int8.") as tmp:
        opset13, prepared = os.path.join(tmp, "opset13.onnx"), os.path.join(tmp, "prepared.onnx")
        onnx.save(version_converter.convert_version(model, QDQ_OPSET), opset13)
        quantization.quant_pre_process(opset13, prepared, skip_symbolic_shape=True)   # folds BatchNorm into Conv
        quantization.quantize_static(prepared, out_path, CalibrationImages(input_name),
                                     quant_format=quantization.QuantFormat.QDQ, per_channel=True,
                                     activation_type=quantization.QuantType.QUInt8,
                                     weight_type=quantization.QuantType.QInt8,
                                     calibrate_method=quantization.CalibrationMethod.MinMax)


def compare(float_path, int8_path_, loader):
    """Logits of both files on every image of ``loader`` (one pass, batch 1) and the labels."""
    models = [OnnxRuntimeModel(float_path), OnnxRuntimeModel(int8_path_)]
    logits, labels = ([], []), []
    for images, batch_labels in batches(loader, output_numpy=True):
        for model, out in zip(models, logits):
            out.append(model.run(images))
        labels.append(batch_labels.astype(np.int64))
    return np.concatenate(logits[0]), np.concatenate(logits[1]), np.concatenate(labels)


def latencies_ms(paths, image):
    """Median milliseconds of one call on ``image`` in ONNX Runtime for each file of ``paths``, timed in alternating
    blocks of calls so that a busy machine slows them alike. Not call by call: ONNX Runtime's threads keep spinning
    for a while after a call and slowed the other file's call (int8 measured 10x slower than it is)."""
    models = [OnnxRuntimeModel(path) for path in paths]
    times = [[] for _ in models]
    for _ in range(LATENCY_RUNS // LATENCY_BLOCK):
        for model, spent in zip(models, times):
            for _ in range(WARMUP_RUNS):
                model.run(image)
            for _ in range(LATENCY_BLOCK):
                begin = time.perf_counter()
                model.run(image)
                spent.append(time.perf_counter() - begin)
    return [1000 * statistics.median(spent) for spent in times]


def figures(float_logits, int8_logits, labels):
    """Top-1 of each file, the agreement of their top-1 classes and the count of images."""
    float_pred, int8_pred = float_logits.argmax(axis=1), int8_logits.argmax(axis=1)
    return {"num_samples": int(len(labels)), "top1_float": float(np.mean(float_pred == labels)),
            "top1_int8": float(np.mean(int8_pred == labels)), "agreement": float(np.mean(float_pred == int8_pred))}


def write_int8(cfg, float_path, data):
    """``export.py --quantize int8``: write the int8 file beside ``float_path`` (the checked float ONNX file),
    calibrated on ``calibration_count`` images of ``data`` (val_split), compare both on all of it, print the figures
    and return them (the metadata's ``int8``). A quantisation ONNX Runtime cannot do is a one-line DataError."""
    out = int8_path(float_path)
    calibration = preprocessed(cfg, spread_over(data.paths, cfg.calibration_count), data.class_names)
    try:
        quantize_static_int8(float_path, out, calibration)
        OnnxRuntimeModel(out)   # loads: a DataError naming the file if not
    except (ImportError, ValueError, RuntimeError, TypeError, KeyError, OSError) as err:
        raise DataError(f"int8 quantisation of {os.path.basename(float_path)} failed: {first_line(err)}; "
                        "nothing was replaced") from None
    loader = build_loader(cfg, data, len(data.class_names), training=False, batch_size=1)
    result = figures(*compare(float_path, out, loader))
    latency_float, latency_int8 = latencies_ms([float_path, out], calibration[0])
    result.update(file=os.path.basename(out), mode=MODE, split=cfg.val_split, calibration_images=len(calibration),
                  size_bytes_float=os.path.getsize(float_path), size_bytes_int8=os.path.getsize(out),
                  latency_ms_float=latency_float, latency_ms_int8=latency_int8, latency_runs=LATENCY_RUNS,
                  onnxruntime=OnnxRuntimeModel(out).version)
    print(report(result))
    return result


def report(result):
    """The printed block of :func:`write_int8`'s figures."""
    mb, time_ratio = 2 ** 20, result["latency_ms_int8"] / result["latency_ms_float"]
    return "\n".join([
        f"int8 ({result['mode']}; {result['calibration_images']} calibration images of {result['split']}), "
        f"on {result['split']} ({result['num_samples']} images), ONNX Runtime {result['onnxruntime']}:",
        f"  top1        float {result['top1_float']:.4f}   int8 {result['top1_int8']:.4f}   "
        f"({result['top1_int8'] - result['top1_float']:+.4f})",
        f"  agreement   {result['agreement']:.4f} of the images have the same top-1 class in both",
        f"  size        float {result['size_bytes_float'] / mb:.2f} MiB   int8 {result['size_bytes_int8'] / mb:.2f} MiB"
        f"   ({result['size_bytes_float'] / result['size_bytes_int8']:.1f}x smaller)",
        f"  latency     float {result['latency_ms_float']:.2f} ms   int8 {result['latency_ms_int8']:.2f} ms   "
        f"(one image, median of {result['latency_runs']} runs in alternating blocks; int8 takes {time_ratio:.2f}x the "
        "float time)",
    ])
