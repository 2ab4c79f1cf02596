"""Predict classes with a checkpoint (or an exported MindIR): on a dataset split or on image files/folders.

    python predict.py --config runs/demo/config.yaml --ckpt_path runs/demo/mobilenet_v3_small_100_best.ckpt \
        [--split test | --input img.jpg folder/ ...] [--topk 5] [--format csv|json] [--visualize]
"""
import gc
import json
import os
import sys

os.environ.setdefault("GLOG_v", "3")  # MindSpore: errors only

import mindspore as ms  # noqa: E402
import numpy as np  # noqa: E402

from tools import reports, runtime  # noqa: E402
from tools.config import BOOL, INT, STR, STRS, parse_config  # noqa: E402
from tools.data import build_loader, open_split  # noqa: E402
from tools.engine import predict_logits  # noqa: E402
from tools.errors import DataError, UsageError, run_cli  # noqa: E402
from tools.fileio import check_output_file, check_writable_dir, first_line  # noqa: E402
from tools.inputs import find_images, input_split  # noqa: E402
from tools.model import checkpoint_network, class_names_of, numbered_classes, read_checkpoint  # noqa: E402


def output_format(value):
    if value not in ("csv", "json"):
        raise ValueError("expected csv or json")
    return value


EXTRA = {"Prediction": [
    ("split", "", STR, "split to predict when no --input is given; empty = val_split"),
    ("input", [], STRS, "image files and/or folders (searched recursively) to predict instead of a split"),
    ("mindir", "", STR, "run this MindIR written by export.py instead of ckpt_path"),
    ("topk", 5, INT, "number of classes listed per image (capped at the class count)"),
    ("format", "csv", output_format, "predictions file format: csv or json"),
    ("out", "", STR, "predictions file; empty = <out_dir>/predictions.<format>"),
    ("out_dir", "", STR, "output folder; empty = the folder of the checkpoint or MindIR"),
    ("visualize", False, BOOL, "also draw prediction_grid.png: images with predicted (and true) classes"),
    ("grid_size", 16, INT, "at most this many images in prediction_grid.png"),
]}


def classes_file(mindir):
    """``model.mindir`` -> ``model.classes.json`` (written by export.py)."""
    return os.path.splitext(mindir)[0] + ".classes.json"


def mindir_info(cfg):
    """``(class_names, input_shape)`` of the MindIR from its classes.json; image_resize must match."""
    if not os.path.isfile(cfg.mindir):
        raise DataError(f"MindIR not found: {cfg.mindir}")
    path = classes_file(cfg.mindir)
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
        class_names, shape = list(info["class_names"]), list(info["input_shape"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"cannot read the class names of {cfg.mindir} from {path} ({err.__class__.__name__}): "
                        "export it again with export.py") from None
    if cfg.image_resize != shape[-1]:
        raise UsageError(f"{cfg.mindir} takes {shape[-1]}x{shape[-1]} images but image_resize is "
                         f"{cfg.image_resize}: pass the run's --config")
    return class_names, shape


def load_graph(path):
    """The MindIR as a callable cell."""
    try:
        return ms.nn.GraphCell(ms.load(path))
    except (RuntimeError, ValueError, TypeError) as err:
        raise DataError(f"cannot load MindIR {path}: {first_line(err)}") from None


def open_inputs(cfg, class_names):
    """The ``--input`` images (labels unknown) or else the split, as :class:`tools.data.SplitData`."""
    if cfg.input:
        return input_split(cfg, find_images(cfg.input), class_names)
    return open_split(cfg, cfg.split or cfg.val_split, class_names=class_names)


def check_values(cfg):
    if not cfg.ckpt_path and not cfg.mindir:
        raise UsageError("predict.py needs --ckpt_path (a checkpoint of finetune.py) or --mindir (from export.py)")
    for key in ("topk", "grid_size"):
        if getattr(cfg, key) < 1:
            raise UsageError(f"'{key}' must be > 0, got {getattr(cfg, key)}")


def predict(cfg):
    """Run the model over the inputs; returns ``(records, logits, labels)`` (labels -1 when unknown)."""
    if cfg.mindir:
        class_names, shape = mindir_info(cfg)
        data = open_inputs(cfg, class_names)
        network, batch_size = load_graph(cfg.mindir), shape[0]  # exported with a fixed batch of 1
    else:
        params = read_checkpoint(cfg.ckpt_path)
        data = open_inputs(cfg, class_names_of(params) or (numbered_classes(cfg) if cfg.input else None))
        network, batch_size = checkpoint_network(cfg, params, data.class_names), cfg.batch_size
    loader = build_loader(cfg, data, len(data.class_names), training=False, batch_size=batch_size)
    logits, labels = predict_logits(network, loader, batch_size)
    del network, loader
    gc.collect()
    top_idx, top_prob = reports.topk_predictions(logits, min(cfg.topk, len(data.class_names)))
    return reports.prediction_records(data.paths, labels, top_idx, top_prob, data.class_names), logits, labels


def main(argv=None):
    cfg = parse_config(argv, "Predict classes of a dataset split or of image files with a checkpoint or MindIR.",
                       extra=EXTRA)
    check_values(cfg)
    check_writable_dir(cfg.out_dir or os.path.dirname(os.path.abspath(cfg.mindir or cfg.ckpt_path)), "out_dir")
    check_output_file(cfg.out, "out")
    cfg.eval_shuffle = False  # predictions are matched to file names by order
    runtime.setup(cfg)
    records, logits, labels = predict(cfg)
    out_dir = cfg.out_dir or os.path.dirname(os.path.abspath(cfg.mindir or cfg.ckpt_path))
    os.makedirs(out_dir, exist_ok=True)
    out = cfg.out or os.path.join(out_dir, f"predictions.{cfg.format}")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    reports.write_predictions(out, records, cfg.format)
    print(f"{len(records)} images predicted; predictions written to {out}")
    if not cfg.input:
        preds = logits.argmax(axis=1)
        reports.write_pred_txt(os.path.join(out_dir, "pred.txt"), preds, labels)
        print(f"top1 on {cfg.split or cfg.val_split}: {float(np.mean(preds == labels)):.4f}; "
              f"pred.txt written to {out_dir}")
    if cfg.visualize:
        grid = os.path.join(out_dir, "prediction_grid.png")
        reports.plot_prediction_grid(records[:cfg.grid_size], grid)
        print(f"prediction grid written to {grid}")
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
