"""Out-of-distribution detection (``validate.py --ood_dir``): will the model say "I don't know" on a picture unlike
its classes, and at which threshold.

Two scores, higher = more like the training data, both from the logits divided by the temperature T the
probabilities use (``validate.py --calibrate``; 1 without one), averaged over the TTA views:

* maximum softmax probability (MSP, Hendrycks & Gimpel 2017): ``max_c softmax(z / T)_c``, the score
  ``predict.py --min_prob`` thresholds;
* energy (Liu et al. 2020): ``T * logsumexp(z / T)`` (the negative free energy).

For each: AUROC (the probability that a split image scores above an OOD image, ties counted half) and the false
positive rate at 95% true positive rate (the share of OOD images that score at or above the threshold keeping 95%
of the split's images). The ``unknown`` threshold is fitted on the split alone: the MSP that keeps ``tpr`` of its
images (``--ood_tpr``). It is stored beside the checkpoint in ``<checkpoint without .ckpt>.ood.json`` with the
checkpoint's sha256, the temperature and TTA mode it was fitted with; ``predict.py --min_prob auto`` and
``export.py`` (key ``unknown_threshold`` of the metadata) read it.
"""
import json
import math
import os

from tools.core.errors import DataError, UsageError
from tools.core.fileio import file_sha256, write_checkpoint_note
from tools.evaluate import calibration
from tools.report import evaluation as reports

import matplotlib.pyplot as plt
import numpy as np

SCORES = ("msp", "energy")
SCORE_NAMES = {"msp": "maximum softmax probability", "energy": "energy (T * logsumexp(logits / T))"}
SCORES_FILE, HISTOGRAM_FILE = "ood_scores.csv", "ood_scores.png"
AUTO = "auto"
FPR_AT_TPR = 0.95
HISTOGRAM_SIZE = (10.0, 4.0)  # inches


def min_prob_value(value):
    """``predict.py --min_prob``: a probability in [0, 1], or ``auto`` (the threshold ``validate.py --ood_dir``
    fitted)."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    if isinstance(value, bool):
        raise ValueError("expected a number or 'auto'")
    return float(value)


def scores(views, temperature):
    """``{"msp": (N,), "energy": (N,)}`` of ``views`` (V, N, C) logits at ``temperature``."""
    views = np.asarray(views, np.float64) / temperature
    top = views.max(axis=2, keepdims=True)
    energy = temperature * (top[..., 0] + np.log(np.exp(views - top).sum(axis=2)))
    return {"msp": calibration.probabilities(views, 1.0).max(axis=1), "energy": energy.mean(axis=0)}


def auroc(inside, outside):
    """P(an in-distribution score > an OOD score) + P(equal) / 2 (the Mann-Whitney statistic)."""
    inside, outside = np.asarray(inside, np.float64), np.asarray(outside, np.float64)
    order = np.sort(outside)
    below = np.searchsorted(order, inside, side="left")
    equal = np.searchsorted(order, inside, side="right") - below
    return float((below + equal / 2).sum() / (len(inside) * len(outside)))


def threshold_at_tpr(inside, tpr):
    """The largest score that keeps at least ``tpr`` of ``inside`` at or above it."""
    ordered = np.sort(np.asarray(inside, np.float64))
    keep = math.ceil(tpr * len(ordered) - 1e-9)
    return float(ordered[len(ordered) - max(keep, 1)])


def fpr_at_tpr(inside, outside, tpr=FPR_AT_TPR):
    """Share of ``outside`` scoring at or above :func:`threshold_at_tpr` of ``inside``."""
    return float(np.mean(np.asarray(outside) >= threshold_at_tpr(inside, tpr)))


def analyse(split_views, ood_views, temperature, tpr):
    """``(metrics, per-image scores)``: AUROC and FPR at 95% TPR of each score, and the ``unknown`` threshold
    (MSP at ``tpr`` on the split) with its true and false positive rates."""
    inside, outside = scores(split_views, temperature), scores(ood_views, temperature)
    threshold = threshold_at_tpr(inside["msp"], tpr)
    result = {"num_split": len(inside["msp"]), "num_ood": len(outside["msp"]), "temperature": temperature,
              "tpr": tpr, "min_prob": threshold, "split_kept": float(np.mean(inside["msp"] >= threshold)),
              "ood_kept": float(np.mean(outside["msp"] >= threshold))}
    for name in SCORES:
        result[name] = {"auroc": auroc(inside[name], outside[name]),
                        "fpr_at_95_tpr": fpr_at_tpr(inside[name], outside[name])}
    return result, inside, outside


def check_tpr(tpr):
    if not 0 < tpr < 1:
        raise UsageError(f"'ood_tpr' must be in (0, 1), got {tpr}")


def write_scores(path, split_paths, inside, ood_paths, outside):
    """``ood_scores.csv``: image, set (split or ood), msp, energy: what the metrics are computed from."""
    rows = [[p, kind, *(float(s[name][i]) for name in SCORES)]
            for kind, paths, s in (("split", split_paths, inside), ("ood", ood_paths, outside))
            for i, p in enumerate(paths)]
    reports.write_csv(path, ["image", "set", *SCORES], rows)


def plot_histograms(inside, outside, result, png_path):
    """One histogram per score: the split's images against the OOD folder's, the MSP threshold drawn."""
    fig, axes = plt.subplots(1, len(SCORES), figsize=HISTOGRAM_SIZE)
    for ax, name in zip(axes, SCORES):
        values = np.concatenate([inside[name], outside[name]])
        bins = np.linspace(values.min(), values.max() + 1e-12, 31)
        ax.hist(inside[name], bins=bins, alpha=0.6, label=f"split ({len(inside[name])})", color="tab:blue")
        ax.hist(outside[name], bins=bins, alpha=0.6, label=f"OOD folder ({len(outside[name])})", color="tab:red")
        if name == "msp":
            ax.axvline(result["min_prob"], color="black", linestyle="--",
                       label=f"unknown below {result['min_prob']:.3f}")
        ax.set_title(f"{SCORE_NAMES[name]}\nAUROC {result[name]['auroc']:.3f}, FPR@95 "
                     f"{result[name]['fpr_at_95_tpr']:.3f}", fontsize=9)
        ax.set_ylabel("images")
        ax.legend(fontsize=8)
    fig.tight_layout()
    reports.save_figure(fig, png_path)


# ---- the threshold file beside a checkpoint -------------------------------------------------

def threshold_path(ckpt_path):
    return os.path.splitext(ckpt_path)[0] + ".ood.json"


def save_threshold(ckpt_path, result, split, tta, ood_dir):
    """Write ``<ckpt>.ood.json``: the fitted ``min_prob``, what it was fitted with and the checkpoint's sha256."""
    data = {"min_prob": result["min_prob"], "score": "msp", "tpr": result["tpr"], "temperature": result["temperature"],
            "tta": tta, "split": split, "ood_dir": os.path.abspath(ood_dir), **{name: result[name] for name in SCORES}}
    return write_checkpoint_note(threshold_path(ckpt_path), ckpt_path, data)


def stored_threshold(ckpt_path):
    """The threshold file of ``ckpt_path`` when it is there and fits this checkpoint, else None."""
    path = threshold_path(ckpt_path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        float(data["min_prob"]), float(data["temperature"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return data if data.get("checkpoint_sha256") == file_sha256(ckpt_path) else None


def export_entry(ckpt_path):
    """The metadata entry ``unknown_threshold`` of an export (``{}`` without a fitted threshold)."""
    data = stored_threshold(ckpt_path)
    if data is None:
        return {}
    return {"unknown_threshold": {key: data[key] for key in ("min_prob", "score", "tpr", "temperature", "tta")}}


def auto_min_prob(ckpt_path, meta, temperature, tta):
    """``predict.py --min_prob auto``: the fitted threshold of the checkpoint (or of the exported model's
    metadata ``meta``); a missing one, or one fitted at another temperature or TTA mode, is a one-line error."""
    if meta is not None:
        data, where = meta.get("unknown_threshold"), "the exported model's metadata"
    else:
        data, where = stored_threshold(ckpt_path), threshold_path(ckpt_path)
    if data is None:
        raise DataError(f"--min_prob auto: no unknown threshold fitted for this model in {where}; run validate.py "
                        "--ood_dir FOLDER on its checkpoint first (then export again)")
    if not math.isclose(float(data["temperature"]), temperature, rel_tol=1e-9) or data.get("tta", "none") != tta:
        raise DataError(f"--min_prob auto: the threshold in {where} was fitted at temperature "
                        f"{float(data['temperature']):.4f} with tta {data.get('tta', 'none')}, but this run uses "
                        f"{temperature:.4f} with tta {tta}; run validate.py --ood_dir again or give --min_prob P")
    return float(data["min_prob"])
