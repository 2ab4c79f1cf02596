"""Confidence calibration: expected calibration error, reliability bins and temperature scaling.

Probabilities come from one or more views of each image (test-time augmentation): ``views`` is
``(V, N, C)`` logits and the probability of a class is the mean over the views of
``softmax(logits / T)``. The temperature ``T`` fitted by :func:`fit_temperature` is stored beside
the checkpoint (``<checkpoint without .ckpt>.calibration.json``) with the checkpoint's sha256, so a
retrained checkpoint is never paired with a stale temperature.
"""
import math
import os

from tools.core.fileio import RejectedNote, read_checkpoint_note, write_checkpoint_note
from tools.evaluate import metrics

import numpy as np

ECE_BINS = 15
TEMPERATURE_RANGE = (0.01, 100.0)  # searched on a log scale
_SEARCH_STEPS = 80                  # golden-section steps: the bracket shrinks to ~1e-16 of its width
_TINY = np.finfo(np.float64).tiny


def probabilities(views, temperature=1.0):
    """``(N, C)`` mean over the views of ``softmax(logits / temperature)``."""
    views = np.asarray(views, np.float64)
    return np.mean([metrics.softmax(v / temperature) for v in views], axis=0)


def log_probabilities(views, temperature=1.0):
    """``log`` of :func:`probabilities`: usable wherever logits are (same top-k, loss = NLL)."""
    return np.log(np.maximum(probabilities(views, temperature), _TINY))


def nll(views, labels, temperature=1.0):
    """Mean negative log-likelihood of the true labels."""
    return float(-log_probabilities(views, temperature)[np.arange(len(labels)), labels].mean())


def reliability_bins(probs, labels, bins=ECE_BINS):
    """Per equal-width confidence bin ``(lo, hi]``: ``(count, accuracy, mean confidence)`` arrays
    (accuracy and confidence NaN for an empty bin); confidence is the top-1 probability."""
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(index, weights=correct, minlength=bins) / count
        mean_conf = np.bincount(index, weights=confidence, minlength=bins) / count
    return count, accuracy, mean_conf


def expected_calibration_error(probs, labels, bins=ECE_BINS):
    """ECE: the sample-weighted mean over the bins of |accuracy - mean confidence|."""
    count, accuracy, confidence = reliability_bins(probs, labels, bins)
    used = count > 0
    return float((count[used] * np.abs(accuracy[used] - confidence[used])).sum() / count.sum())


def fit_temperature(views, labels):
    """The temperature in ``TEMPERATURE_RANGE`` that minimises the NLL of ``labels`` (golden-section
    search on log T; the NLL of one view is convex in 1/T, hence unimodal in log T)."""
    lo, hi = (math.log(t) for t in TEMPERATURE_RANGE)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(views, labels, math.exp(a)), nll(views, labels, math.exp(b))
    for _ in range(_SEARCH_STEPS):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(views, labels, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(views, labels, math.exp(b))
    return math.exp((lo + hi) / 2)


# ---- the temperature file beside a checkpoint -------------------------------------------------

def calibration_path(ckpt_path):
    return os.path.splitext(ckpt_path)[0] + ".calibration.json"


def save_temperature(ckpt_path, temperature, details):
    """Write ``<ckpt>.calibration.json``: temperature, the checkpoint's sha256 and ``details``."""
    return write_checkpoint_note(calibration_path(ckpt_path), ckpt_path, {"temperature": temperature, **details})


def stored_temperature(ckpt_path):
    """``(temperature, path)`` from the checkpoint's calibration file, or ``(None, None)`` when there
    is none; a file that is unreadable or belongs to another version of the checkpoint is ignored
    with a warning naming it."""
    path = calibration_path(ckpt_path)
    temperature = read_checkpoint_note(path, ckpt_path, _temperature, "validate.py --calibrate True")
    return (temperature, path) if temperature is not None else (None, None)


def _temperature(data):
    temperature = float(data["temperature"])
    if not (math.isfinite(temperature) and temperature > 0):
        raise RejectedNote(f"temperature {temperature} is not > 0")
    return temperature


def resolve_temperature(flag, ckpt_path):
    """The temperature to use: ``flag`` when > 0, else the stored one, else 1; and where it came from."""
    if flag > 0:
        return flag, "--temperature"
    temperature, path = stored_temperature(ckpt_path)
    return (temperature, path) if temperature is not None else (1.0, None)
