"""An exported model's metadata file (``<model>.classes.json`` beside ``<model>.mindir`` and ``<model>.onnx``)
and loading them.

The metadata holds what running the MindIR or the ONNX file needs besides the graph: the class names, the input
shape, the temperature (divide the logits by it before the softmax), for a multi-label model ``task: multilabel``
and ``thresholds`` (one per class: a label is predicted when its sigmoid probability is >= it), and the evaluation
preprocessing (resize the shorter side to ``resize``, centre-crop ``crop`` x ``crop``, subtract
``mean`` and divide by ``std`` per RGB channel on the 0-255 scale, NCHW). ``predict.py --mindir/--onnx``
and ``validate.py --onnx`` take the preprocessing from it, so no config is needed.
"""
import json
import math
import os

from tools.core.config import option_table, update
from tools.core.errors import DataError, UsageError
from tools.core.fileio import first_line
from tools.evaluate.onnx_export import OnnxRuntimeModel

import mindspore as ms
import numpy as np

MULTILABEL = "multilabel"  # the metadata's task of a multi-label model (no task: single-label)
PREPROCESSING_KEYS = ("image_resize", "crop_pct", "interpolation", "mean", "std")
INT8_SUFFIX = ".int8.onnx"   # export.py --quantize int8: model.int8.onnx beside model.onnx


def metadata_path(model_path):
    """``model.mindir`` -> ``model.classes.json``; the int8 file ``model.int8.onnx`` shares its float file's (one
    metadata file per export: the same classes and preprocessing)."""
    if model_path.lower().endswith(INT8_SUFFIX):
        model_path = model_path[:-len(INT8_SUFFIX)] + ".onnx"
    return os.path.splitext(model_path)[0] + ".classes.json"


def preprocessing(cfg):
    """The evaluation transforms of ``cfg`` (MindCV's ``create_transforms(is_training=False)``), spelled out."""
    return {"resize": int(math.floor(cfg.image_resize / cfg.crop_pct)), "crop": cfg.image_resize,
            "interpolation": cfg.interpolation, "mean": list(cfg.mean), "std": list(cfg.std),
            "crop_pct": cfg.crop_pct, "image_resize": cfg.image_resize, "color": "RGB", "layout": "NCHW"}


def metadata(cfg, class_names, shape, temperature, parity, thresholds=None):
    """What ``<model>.classes.json`` holds (see the module docstring); ``parity``: what export.py checked. A
    multi-label model's (``thresholds``: one per class) also holds ``task: multilabel`` and the thresholds."""
    meta = {"model": cfg.model, "input_shape": shape, "class_names": list(class_names), "output": "logits",
            "temperature": temperature, "preprocessing": preprocessing(cfg), "parity_check": parity}
    if thresholds is not None:
        meta.update(task=MULTILABEL, thresholds=[float(t) for t in thresholds])
    return meta


def format_name(path):
    """``MindIR`` or ``ONNX``, by the file's extension."""
    return "ONNX" if path.lower().endswith(".onnx") else "MindIR"


def read_metadata(model_path):
    if not os.path.isfile(model_path):
        raise DataError(f"{format_name(model_path)} not found: {model_path}")
    path = metadata_path(model_path)
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
        meta["class_names"], meta["input_shape"] = list(meta["class_names"]), list(meta["input_shape"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"cannot read the class names of {model_path} from {path} ({err.__class__.__name__}): "
                        "export it again with export.py") from None
    return meta


def _same(a, b):
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return len(a) == len(b) and np.allclose(a, b)
    return a == b


def apply_metadata(cfg, model_path, flag):
    """Set ``cfg``'s preprocessing from the metadata of the exported model ``model_path`` (given as ``flag``,
    e.g. ``--mindir``); a value set to something else (not left at its default) is an error, since the graph
    only fits its own preprocessing. Metadata without the preprocessing (older exports) only fixes the image
    size. Returns the metadata."""
    meta = read_metadata(model_path)
    hint = (f"leave it unset ({flag} reads the preprocessing from {metadata_path(model_path)}) "
            "or pass the run's --config")
    size, defaults = meta["input_shape"][-1], option_table()
    stored = meta.get("preprocessing") or {"image_resize": size}
    for key, value in stored.items():
        if key not in PREPROCESSING_KEYS:
            continue
        mine = getattr(cfg, key)
        if not _same(mine, value) and ("preprocessing" not in meta or not _same(mine, defaults[key][0])):
            if key == "image_resize":
                raise UsageError(f"{model_path} takes {size}x{size} images but image_resize is {mine}: {hint}")
            raise UsageError(f"{model_path} was exported with {key} {value}, not {mine}: {hint}")
        update(cfg, f"{model_path}'s metadata", **{key: value})
    update(cfg, f"{model_path}'s metadata", in_channels=meta["input_shape"][1])
    if meta.get("task") == MULTILABEL:  # the keys a multi-label config must have with it
        update(cfg, f"{model_path}'s metadata", task=MULTILABEL, loss="bce", best_metric="map")
    return meta


def load_model(path):
    """The exported model as a callable network: an ONNX file run by ONNX Runtime, else the MindIR."""
    if format_name(path) == "ONNX":
        return OnnxRuntimeModel(path)
    return load_graph(path)


def load_graph(path):
    """The MindIR as a callable cell."""
    try:
        return ms.nn.GraphCell(ms.load(path))
    except (RuntimeError, ValueError, TypeError) as err:
        raise DataError(f"cannot load MindIR {path}: {first_line(err)}") from None
