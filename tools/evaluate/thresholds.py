"""The per-class decision thresholds of a multi-label checkpoint, in a file beside it
(``<checkpoint without .ckpt>.thresholds.json``, written by ``validate.py --tune_thresholds True``) with the
checkpoint's sha256, as ``tools.evaluate.calibration`` keeps a temperature: predict.py and export.py read it
(export.py copies the thresholds into the exported model's metadata). Without one every class uses 0.5.
"""
import math
import os

from tools.core.fileio import RejectedNote, read_checkpoint_note, write_checkpoint_note
from tools.evaluate.multilabel_metrics import DEFAULT_THRESHOLD


def thresholds_path(ckpt_path):
    return os.path.splitext(ckpt_path)[0] + ".thresholds.json"


def save_thresholds(ckpt_path, class_names, thresholds, details):
    """Write ``<ckpt>.thresholds.json``: ``{class: threshold}``, the checkpoint's sha256 and ``details``."""
    data = {"thresholds": {name: float(t) for name, t in zip(class_names, thresholds)}, **details}
    return write_checkpoint_note(thresholds_path(ckpt_path), ckpt_path, data)


def stored_thresholds(ckpt_path, class_names):
    """``(thresholds, path)`` of the checkpoint's thresholds file (one per class of ``class_names``), or
    ``(None, None)`` when there is none; a file that is unreadable, names other classes or belongs to another
    version of the checkpoint is ignored with a warning naming it."""
    path = thresholds_path(ckpt_path)

    def read(data):
        stored = data["thresholds"]  # missing: an unreadable file
        try:
            thresholds = [float(stored[name]) for name in class_names]
        except KeyError as err:
            raise RejectedNote(f"it names other classes (no {err})") from None
        if not all(math.isfinite(t) for t in thresholds):
            raise RejectedNote("a threshold is not a finite number")
        return thresholds

    thresholds = read_checkpoint_note(path, ckpt_path, read, "validate.py --tune_thresholds True", what="tuned")
    return (thresholds, path) if thresholds is not None else (None, None)


def resolve_thresholds(ckpt_path, class_names):
    """The thresholds to predict with (the stored ones, else 0.5 for every class) and where they came from."""
    thresholds, path = stored_thresholds(ckpt_path, class_names)
    return (thresholds, path) if thresholds is not None else ([DEFAULT_THRESHOLD] * len(class_names), None)
