"""Export a checkpoint's network (eval mode) to MindIR and/or ONNX, with its class names beside it.

    python export.py --config runs/demo/config.yaml --ckpt_path runs/demo/mobilenet_v3_small_100_best.ckpt \
        [--format MINDIR|ONNX|both] [--out runs/demo/model]

The input shape is fixed at (1, in_channels, image_resize, image_resize): one preprocessed image
(MindCV's eval transforms of the run's config) per call.
"""
import gc
import os
import sys

os.environ.setdefault("GLOG_v", "3")  # MindSpore: errors only

import mindspore as ms  # noqa: E402
import numpy as np  # noqa: E402

from tools import runtime  # noqa: E402
from tools.checkpoints import write_json  # noqa: E402
from tools.config import STR, parse_config  # noqa: E402
from tools.errors import DataError, UsageError, run_cli  # noqa: E402
from tools.fileio import check_output_file, first_line  # noqa: E402
from tools.model import checkpoint_network, class_names_of, numbered_classes, read_checkpoint  # noqa: E402

EXTENSIONS = {"MINDIR": ".mindir", "ONNX": ".onnx"}


FORMATS = {"MINDIR": ["MINDIR"], "ONNX": ["ONNX"], "BOTH": ["MINDIR", "ONNX"]}


def export_format(value):
    if str(value).upper() not in FORMATS:
        raise ValueError("expected MINDIR, ONNX or both")
    return str(value).upper()


EXTRA = {"Export": [
    ("format", "MINDIR", export_format, "MINDIR, ONNX or both"),
    ("out", "", STR, "output path without extension (.mindir/.onnx and .classes.json are added); "
                     "empty = the checkpoint's path without .ckpt"),
]}


def output_base(cfg):
    """``--out`` (or the checkpoint path) without a .ckpt/.mindir/.onnx extension."""
    base, ext = os.path.splitext(cfg.out or cfg.ckpt_path)
    return base if ext.lower() in (".ckpt", ".mindir", ".onnx") else base + ext


def export_one(network, sample, base, file_format, cfg):
    """Write ``base`` + extension; an ONNX export MindSpore cannot do is a one-line DataError."""
    path = base + EXTENSIONS[file_format]
    try:
        ms.export(network, sample, file_name=base, file_format=file_format)
    except (RuntimeError, TypeError, ValueError) as err:
        if os.path.exists(path):
            os.remove(path)
        reason = first_line(err)
        raise DataError(f"{file_format} export is not available for {cfg.model} on {cfg.device_target}: "
                        f"{reason}") from None
    print(f"exported {path}")
    return path


def main(argv=None):
    cfg = parse_config(argv, "Export a checkpoint to MindIR and/or ONNX.", extra=EXTRA)
    if not cfg.ckpt_path:
        raise UsageError("export.py needs --ckpt_path (a checkpoint written by finetune.py)")
    check_output_file(output_base(cfg) + ".classes.json", "out")
    runtime.setup(cfg)
    params = read_checkpoint(cfg.ckpt_path)
    class_names = class_names_of(params) or numbered_classes(cfg)
    network = checkpoint_network(cfg, params, class_names)
    shape = [1, cfg.in_channels, cfg.image_resize, cfg.image_resize]
    base = output_base(cfg)
    os.makedirs(os.path.dirname(os.path.abspath(base)), exist_ok=True)
    write_json(base + ".classes.json", {"model": cfg.model, "input_shape": shape, "class_names": class_names})
    try:
        for file_format in FORMATS[cfg.format]:
            export_one(network, ms.Tensor(np.zeros(shape, np.float32)), base, file_format, cfg)
    finally:
        del network
        gc.collect()
    print(f"input shape {tuple(shape)}; class names in {base}.classes.json")
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
