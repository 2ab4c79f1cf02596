"""Evaluation reports: per-class metrics, confusion matrix, prediction tables and figures.

Every file is written atomically (temporary file, then rename); figures use matplotlib's Agg
backend at ``DPI`` dots per inch, so a figure of ``w x h`` inches is ``w*DPI x h*DPI`` pixels.
"""
import csv
import io
import json
import math
import os

import matplotlib

matplotlib.use("Agg")
from tools.core.fileio import atomic_path, atomic_write_text
from tools.evaluate import metrics

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

DPI = 150  # 5-pt tick labels of a 100-class confusion matrix stay legible
CELL_INCHES, MIN_MATRIX_INCHES = 0.12, 6.0  # confusion matrix: inches per class, smallest side
GRID_CELL_INCHES = 2.5                       # prediction grid: inches per image
CURVES_SIZE = (10.0, 4.0)                    # training curves: inches
RELIABILITY_SIZE = (5.0, 6.0)                # reliability diagram: inches
ANNOTATE_MAX_CLASSES = 20                    # write the counts in the cells up to this many classes
RIGHT, WRONG, UNKNOWN = "green", "red", "black"
CURVE_METRICS = {"top1": ("Validation Top-1", "top-1 accuracy"), "map": ("Validation mAP", "mean average precision")}
FIGURE_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg"}  # file extension -> what save_figure writes


# ---- metrics as reported ---------------------------------------------------------------------------

def class_report(logits, labels, class_names):
    """``(metrics, matrix)``: top1/top5/loss/num_samples, ``per_class`` ``{name: accuracy or None}``,
    ``mean_per_class_acc``, ``macro_f1``, ``weighted_f1`` and ``per_class_prf`` ``{name: {precision,
    recall, f1, support}}`` (None where undefined); ``matrix`` is the confusion matrix."""
    result = metrics.summarize(logits, labels)
    matrix = metrics.confusion_matrix(labels, logits.argmax(axis=1), len(class_names))
    _, _, accuracy = metrics.per_class_accuracy(matrix)
    precision, recall, f1, support = metrics.precision_recall_f1(matrix)
    result["per_class"] = {name: _number(acc) for name, acc in zip(class_names, accuracy)}
    result["mean_per_class_acc"] = float(np.nanmean(accuracy))
    result["macro_f1"], result["weighted_f1"] = metrics.f1_averages(matrix)
    result["per_class_prf"] = {name: {"precision": _number(p), "recall": _number(r), "f1": _number(f),
                                      "support": int(n)}
                               for name, p, r, f, n in zip(class_names, precision, recall, f1, support)}
    return result, matrix


def _number(value):
    return None if math.isnan(value) else float(value)


def topk_predictions(probs, k):
    """``(indices, probabilities)`` of the ``k`` most probable classes per sample, best first."""
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(probs, order, axis=1)


def highest_loss_errors(probs, labels, count):
    """Indices of the misclassified samples with the lowest probability of their true class
    (highest loss) first, at most ``count``."""
    wrong = np.nonzero(probs.argmax(axis=1) != labels)[0]
    true_prob = probs[wrong, labels[wrong]]
    return wrong[np.argsort(true_prob, kind="stable")][:count]


# ---- tables --------------------------------------------------------------------------------------

def write_csv(path, header, rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def write_confusion_csv(path, matrix, class_names):
    """Rows are true classes, columns predicted classes, both named."""
    write_csv(path, ["true\\pred"] + list(class_names),
              [[name] + [int(v) for v in row] for name, row in zip(class_names, matrix)])


def _cell(value):
    return "" if math.isnan(value) else f"{value:.6f}"


PER_CLASS_COLUMNS = ["class", "support", "correct", "accuracy", "precision", "recall", "f1"]


def write_per_class_csv(path, matrix, class_names):
    """class, support, correct, accuracy, precision, recall, f1 (empty where undefined: accuracy and
    recall of a class without samples, precision of a class never predicted)."""
    support, correct, accuracy = metrics.per_class_accuracy(matrix)
    precision, recall, f1, _ = metrics.precision_recall_f1(matrix)
    write_csv(path, PER_CLASS_COLUMNS,
              [[name, int(n), int(c)] + [_cell(v) for v in values]
               for name, n, c, *values in zip(class_names, support, correct, accuracy, precision, recall, f1)])


MOST_CONFUSED_COLUMNS = ["true", "pred", "count", "share_of_true"]


def write_most_confused_csv(path, pairs):
    """The ``(true, pred, count, share)`` pairs of :func:`tools.evaluate.metrics.most_confused`, in order."""
    write_csv(path, MOST_CONFUSED_COLUMNS, [[t, p, n, f"{share:.6f}"] for t, p, n, share in pairs])


def write_pred_txt(path, preds, labels):
    """MindCV guide's ``pred.txt``: header ``# pred \\t real``, one ``pred real`` row of indices per image."""
    buffer = io.BytesIO()
    np.savetxt(buffer, np.stack([preds, labels], axis=1).astype(np.int64), fmt="%d", header="pred \t real")
    atomic_write_text(path, buffer.getvalue().decode())


UNKNOWN_CLASS = "unknown"  # the answer below --min_prob


def prediction_records(files, labels, probs, class_names, k, min_prob=0.0):
    """One dict per image: file, true (None when unknown), true_prob (None when unknown), pred (``unknown``
    when the top probability is below ``min_prob``), topk [{class, prob}] of the ``k`` best."""
    top_idx, top_prob = topk_predictions(probs, k)
    return [{"file": path, "true": class_names[label] if label >= 0 else None,
             "true_prob": float(row[label]) if label >= 0 else None,
             "pred": class_names[idx[0]] if best[0] >= min_prob else UNKNOWN_CLASS,
             "topk": [{"class": class_names[i], "prob": float(p)} for i, p in zip(idx, best)]}
            for path, label, row, idx, best in zip(files, labels, probs, top_idx, top_prob)]


def write_predictions(path, records, fmt):
    """``csv``: file, true, true_prob, pred, top1, top1_prob, ... topk, topk_prob; ``json``: the records."""
    if fmt == "json":
        atomic_write_text(path, json.dumps(records, indent=2, ensure_ascii=False) + "\n")
        return
    k = len(records[0]["topk"])
    header = ["file", "true", "true_prob", "pred"] + [col for i in range(1, k + 1)
                                                       for col in (f"top{i}", f"top{i}_prob")]
    write_csv(path, header, [[r["file"], r["true"] or "", "" if r["true_prob"] is None else f"{r['true_prob']:.6f}",
                              r["pred"]] + [v for t in r["topk"] for v in (t["class"], f"{t['prob']:.6f}")]
                             for r in records])


# ---- figures -------------------------------------------------------------------------------------

def save_figure(fig, path, dpi=None):
    """Write ``fig`` atomically as its extension says (``FIGURE_FORMATS``, else PNG) and close it (also when the
    write fails)."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=FIGURE_FORMATS.get(os.path.splitext(path)[1].lower(), "png"), dpi=dpi or DPI)
    finally:
        plt.close(fig)


def matrix_inches(num_classes):
    """Side of the confusion-matrix figure: ``CELL_INCHES`` per class, at least ``MIN_MATRIX_INCHES``."""
    return max(MIN_MATRIX_INCHES, CELL_INCHES * num_classes)


def plot_confusion_matrix(matrix, class_names, png_path):
    """Heatmap of the row-normalised matrix (recall per true class) with class names on both axes."""
    n = len(class_names)
    side = matrix_inches(n)
    font = min(9.0, 0.6 * side * 72 / n)  # a tick label takes about 60% of a class's row height
    fig, ax = plt.subplots(figsize=(side, side))
    rows = matrix.sum(axis=1, keepdims=True)
    image = ax.imshow(matrix / np.maximum(rows, 1), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=90, fontsize=font)
    ax.set_yticks(range(n), class_names, fontsize=font)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"Confusion matrix ({int(matrix.sum())} images)")
    if n <= ANNOTATE_MAX_CLASSES:
        for (i, j), count in np.ndenumerate(matrix):
            if count:
                ax.text(j, i, int(count), ha="center", va="center", fontsize=font,
                        color="white" if count > 0.5 * rows[i, 0] else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    fig.tight_layout()
    save_figure(fig, png_path)


def plot_training_curves(rows, png_path, metric="top1"):
    """Two panels per epoch: train and val loss, and val Top-1 (or the task's ``metric``: ``map``; rows without
    validation are skipped).

    ``rows``: dicts with ``epoch``, ``train_loss`` and, when validated, ``val_loss`` and ``metric``.
    """
    fig, (loss_ax, top1_ax) = plt.subplots(1, 2, figsize=CURVES_SIZE)
    epochs = [r["epoch"] for r in rows]
    loss_ax.plot(epochs, [r["train_loss"] for r in rows], "o-", label="train")
    val = [r for r in rows if r.get("val_loss") is not None]
    loss_ax.plot([r["epoch"] for r in val], [r["val_loss"] for r in val], "s-", label="val")
    loss_ax.set(title="Loss", xlabel="epoch", ylabel="loss")
    loss_ax.legend()
    scored = [r for r in rows if r.get(metric) is not None]
    top1_ax.plot([r["epoch"] for r in scored], [r[metric] for r in scored], "s-", color="tab:green")
    title, label = CURVE_METRICS.get(metric, (metric, metric))
    top1_ax.set(title=title, xlabel="epoch", ylabel=label, ylim=(0, 1))
    for ax in (loss_ax, top1_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    save_figure(fig, png_path)


def grid_shape(count):
    """``(rows, cols)`` of a near-square grid holding ``count`` images."""
    cols = math.ceil(math.sqrt(count))
    return math.ceil(count / cols), cols


def plot_image_grid(records, png_path, caption, fontsize=9):
    """The images of ``records`` (their ``file``) in a grid, each titled ``caption(record)`` = (text, colour)."""
    nrows, ncols = grid_shape(len(records))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * GRID_CELL_INCHES, nrows * GRID_CELL_INCHES),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, record in zip(axes.flat, records):
        with Image.open(record["file"]) as image:
            ax.imshow(np.asarray(image.convert("RGB")))
        title, color = caption(record)
        ax.set_title(title, color=color, fontsize=fontsize)
    fig.tight_layout()
    save_figure(fig, png_path)


def plot_prediction_grid(records, png_path):
    """Images with their predicted class and probability (and the true class with its probability when
    known): title green if right, red if wrong, black when the truth is unknown."""
    plot_image_grid(records, png_path, _prediction_caption)


def _prediction_caption(record):
    top = record["topk"][0]
    title = f"{top['class']} ({top['prob']:.2f})"
    if record["pred"] != top["class"]:
        title = f"{record['pred']} (best: {title})"
    if record["true"] is None:
        return title, UNKNOWN
    return (f"{title}\ntrue: {record['true']} ({record['true_prob']:.2f})",
            RIGHT if record["true"] == record["pred"] else WRONG)


def plot_reliability(curves, png_path):
    """Reliability diagram: accuracy against mean confidence per confidence bin for each of ``curves``
    (``{label: (count, accuracy, confidence, ece)}`` from :func:`tools.evaluate.calibration.reliability_bins`),
    the diagonal of perfect calibration, and below it how many images fall in each bin."""
    fig, (ax, hist) = plt.subplots(2, 1, figsize=RELIABILITY_SIZE, sharex=True,
                                   gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    bins = None
    for (label, (count, accuracy, confidence, ece)), marker in zip(curves.items(), "os^"):
        used = count > 0
        ax.plot(confidence[used], accuracy[used], marker + "-", label=f"{label} (ECE {ece:.3f})")
        bins = len(count)
        hist.bar((np.arange(bins) + 0.5) / bins, count, width=1 / bins, alpha=0.4, label=label)
    ax.set(title=f"Reliability ({bins} confidence bins)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="best", fontsize=8)
    hist.set(xlabel="confidence (top-1 probability)", ylabel="images")
    for axis in (ax, hist):
        axis.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, png_path)
