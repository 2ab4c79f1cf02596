"""The per-class decision thresholds of a multi-label checkpoint, in a file beside it
(``<checkpoint without .ckpt>.thresholds.json``, written by ``validate.py --tune_thresholds True``) with the
checkpoint's sha256, as ``tools.evaluate.calibration`` keeps a temperature: predict.py and export.py read it
(export.py copies the thresholds into the exported model's metadata). Without one every class uses 0.5.
"""
import json
import math
import os
import sys

from tools.core.errors import DataError
from tools.core.fileio import atomic_write_text, file_sha256, first_line
from tools.evaluate.multilabel_metrics import DEFAULT_THRESHOLD


def thresholds_path(ckpt_path):
    return os.path.splitext(ckpt_path)[0] + ".thresholds.json"


def save_thresholds(ckpt_path, class_names, thresholds, details):
    """Write ``<ckpt>.thresholds.json``: ``{class: threshold}``, the checkpoint's sha256 and ``details``."""
    path = thresholds_path(ckpt_path)
    data = {"thresholds": {name: float(t) for name, t in zip(class_names, thresholds)},
            "checkpoint": os.path.basename(ckpt_path), "checkpoint_sha256": file_sha256(ckpt_path), **details}
    try:
        atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    except OSError as err:
        raise DataError(f"cannot write {path}: {err.strerror or first_line(err)}") from None
    return path


def stored_thresholds(ckpt_path, class_names):
    """``(thresholds, path)`` of the checkpoint's thresholds file (one per class of ``class_names``), or
    ``(None, None)`` when there is none; a file that is unreadable, names other classes or belongs to another
    version of the checkpoint is ignored with a warning naming it."""
    path = thresholds_path(ckpt_path)
    if not os.path.isfile(path):
        return None, None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        stored, digest = data["thresholds"], data["checkpoint_sha256"]
        thresholds = [float(stored[name]) for name in class_names]
    except (OSError, ValueError, KeyError, TypeError) as err:
        print(f"warning: ignoring {path}: unreadable or for other classes ({err.__class__.__name__}); run "
              "validate.py --tune_thresholds True again", file=sys.stderr)
        return None, None
    if not all(math.isfinite(t) for t in thresholds):
        print(f"warning: ignoring {path}: a threshold is not a finite number", file=sys.stderr)
        return None, None
    if digest != file_sha256(ckpt_path):
        print(f"warning: ignoring {path}: it was tuned for another version of {ckpt_path}; run validate.py "
              "--tune_thresholds True again", file=sys.stderr)
        return None, None
    return thresholds, path


def resolve_thresholds(ckpt_path, class_names):
    """The thresholds to predict with (the stored ones, else 0.5 for every class) and where they came from."""
    thresholds, path = stored_thresholds(ckpt_path, class_names)
    return (thresholds, path) if thresholds is not None else ([DEFAULT_THRESHOLD] * len(class_names), None)
