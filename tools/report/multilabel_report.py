"""What validate.py and predict.py write for a multi-label model (``task: multilabel``), from its sigmoid
probabilities (the metrics: ``tools.evaluate.multilabel_metrics``; the thresholds: ``tools.evaluate.thresholds``).

* validate.py: ``metrics.json`` (mAP, micro/macro F1, micro precision/recall, exact match, the thresholds, the
  classes left out of mAP), ``per_class.csv`` (class, support, ap, precision, recall, f1, threshold),
  ``precision_recall.png`` (the per-class precision-recall curves) and ``report.html``;
* predict.py: per image the file, the true and the predicted label sets (class names joined by ``;``) and one
  probability column per class (``prob:<class>``), so that a user can apply other thresholds; ``--visualize``
  draws the images titled with their predicted sets.
"""
import functools
import json
import math
import os

from tools.core.fileio import atomic_folder, atomic_write_text
from tools.evaluate import exported, multilabel_metrics, thresholds
from tools.report import page as report_page
from tools.report.evaluation import (
    RIGHT,
    UNKNOWN,
    WRONG,
    plot_image_grid,
    save_figure,
    write_csv,
)

import matplotlib.pyplot as plt
import numpy as np

PER_CLASS_COLUMNS = ["class", "support", "ap", "precision", "recall", "f1", "threshold"]
PROB_PREFIX = "prob:"
LABEL_JOIN = ";"
PR_CURVES_MAX = 20  # classes drawn in precision_recall.png (the highest-support ones)


def _number(value):
    return None if math.isnan(value) else float(value)


def class_report(probs, labels, class_names, thresholds):
    """``metrics.json``'s content: the summary metrics and ``per_class`` ``{name: {support, ap, precision, recall,
    f1, threshold}}`` (None where undefined), and ``classes_without_positives`` (left out of mAP and macro F1)."""
    summary = multilabel_metrics.summarize(probs, labels, thresholds)
    result = {key: summary[key] for key in ("map", "map_classes", "micro_precision", "micro_recall", "micro_f1",
                                            "macro_f1", "exact_match", "num_samples")}
    result["loss"] = None  # set by the caller from the logits (mean BCE)
    result["per_class"] = {name: {"support": int(n), "ap": _number(ap), "precision": _number(p),
                                  "recall": _number(r), "f1": _number(f), "threshold": float(t)}
                           for name, n, ap, p, r, f, t in zip(class_names, summary["support"], summary["ap"],
                                                              summary["precision"], summary["recall"],
                                                              summary["f1"], thresholds)}
    result["classes_without_positives"] = [name for name, n in zip(class_names, summary["support"]) if n == 0]
    return result


def write_per_class_csv(path, result):
    """per_class.csv: one row per class (empty cells where a metric is undefined)."""
    def cell(value):
        return "" if value is None else f"{value:.6f}"
    write_csv(path, PER_CLASS_COLUMNS, [[name, m["support"], cell(m["ap"]), cell(m["precision"]), cell(m["recall"]),
                                         cell(m["f1"]), f"{m['threshold']:.6f}"]
                                        for name, m in result["per_class"].items()])


def plot_precision_recall(probs, labels, class_names, png_path):
    """Precision against recall per class (the steps AP sums), for the ``PR_CURVES_MAX`` classes with the most
    positives; the legend gives each class's AP."""
    labels = np.asarray(labels) > 0
    fig, ax = plt.subplots(figsize=(6.0, 5.0))
    for c in np.argsort(-labels.sum(0), kind="stable")[:PR_CURVES_MAX]:
        if not labels[:, c].any():
            continue
        recall, precision = multilabel_metrics.precision_recall_curve(probs[:, c], labels[:, c])
        ap = multilabel_metrics.average_precision(probs[:, c], labels[:, c])
        ax.step(np.r_[0.0, recall], np.r_[1.0, precision], where="post", label=f"{class_names[c]} (AP {ap:.3f})")
    ax.set(title="Precision-recall per class", xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    save_figure(fig, png_path)


def write_reports(report_dir, cfg, result, probs, labels, class_names):
    """metrics.json, per_class.csv, precision_recall.png and report.html in ``report_dir``, replaced as a whole."""
    with atomic_folder(report_dir) as tmp:
        join = functools.partial(os.path.join, tmp)
        write_per_class_csv(join("per_class.csv"), result)
        plot_precision_recall(probs, labels, class_names, join("precision_recall.png"))
        atomic_write_text(join("metrics.json"), json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        _page(join(report_page.REPORT_FILE), cfg, result, join("precision_recall.png"))
    print(f"reports written to {report_dir}: report.html, metrics.json, per_class.csv, precision_recall.png")


def _page(path, cfg, result, figure):
    title = (f"{os.path.basename(result['checkpoint'])} on {result['split']} ({result['num_samples']} images, "
             f"{result['num_classes']} labels)")
    keys = ("map", "map_classes", "micro_f1", "macro_f1", "micro_precision", "micro_recall", "exact_match", "loss",
            "thresholds_from", "tta")
    per_class = [(name, m["support"], m["ap"], m["precision"], m["recall"], m["f1"], m["threshold"])
                 for name, m in result["per_class"].items()]
    config_rows = [(key, getattr(cfg, key)) for key in report_page.CONFIG_SUMMARY_KEYS if hasattr(cfg, key)]
    metric_rows = [(key, result[key]) for key in keys if result.get(key) is not None]
    report_page.write_report(path, title, [
        ("Configuration", report_page.table(["key", "value"], config_rows)),
        ("Metrics", report_page.table(["metric", "value"], metric_rows)),
        ("Per-class metrics (click a header to sort)", report_page.table(PER_CLASS_COLUMNS, per_class, sortable=True)),
        ("Precision-recall curves", report_page.image(figure, "precision-recall curves")),
    ])


def summary_line(cfg, split, result):
    """The line validate.py prints."""
    left_out = len(result["classes_without_positives"])
    return (f"{cfg.model} on {split} ({result['num_samples']} images, tta {cfg.tta}): mAP {result['map']:.4f}"
            + (f" (over {result['map_classes']} classes; {left_out} without positives left out)" if left_out else "")
            + f"  micro F1 {result['micro_f1']:.4f}  macro F1 {result['macro_f1']:.4f}  exact match "
            f"{result['exact_match']:.4f}  micro precision {result['micro_precision']:.4f}  micro recall "
            f"{result['micro_recall']:.4f}  loss {result['loss']:.4f}  (thresholds: {result['thresholds_from']})")


def label_set(row, class_names):
    """Class names of a 0/1 (or boolean) row, joined by ``LABEL_JOIN``."""
    return LABEL_JOIN.join(name for name, on in zip(class_names, row) if on)


def prediction_records(files, labels, probs, class_names, thresholds):
    """One dict per image: file, true (the label set, or None when unknown), pred (the predicted set), probs
    ``{class: probability}``."""
    predicted = multilabel_metrics.predictions(probs, thresholds)
    return [{"file": path, "true": None if label is None else label_set(label, class_names),
             "pred": label_set(chosen, class_names),
             "probs": {name: float(p) for name, p in zip(class_names, row)}}
            for path, label, chosen, row in zip(files, labels, predicted, probs)]


def write_predictions(path, records, fmt):
    """``csv``: file, true, pred, then ``prob:<class>`` per class (written so that they read back exactly: the
    thresholds are compared with them); ``json``: the records."""
    if fmt == "json":
        atomic_write_text(path, json.dumps(records, indent=2, ensure_ascii=False) + "\n")
        return
    names = list(records[0]["probs"])
    write_csv(path, ["file", "true", "pred"] + [PROB_PREFIX + name for name in names],
              [[r["file"], r["true"] or "", r["pred"]] + [repr(r["probs"][n]) for n in names] for r in records])


def plot_prediction_grid(records, png_path):
    """Images titled with their predicted label set (and the true one when known): green when the sets are
    equal, red when not, black when the truth is unknown."""
    plot_image_grid(records, png_path, _label_set_caption, fontsize=7)


def _label_set_caption(record):
    title = "pred: " + (record["pred"].replace(LABEL_JOIN, ", ") or "(none)")
    if record["true"] is None:
        return title, UNKNOWN
    return (title + "\ntrue: " + (record["true"].replace(LABEL_JOIN, ", ") or "(none)"),
            RIGHT if record["true"] == record["pred"] else WRONG)


def validate(cfg, split, model_path, data, views, labels, report_dir):
    """validate.py for a multi-label model: the metrics at the thresholds (tuned on this split with
    ``--tune_thresholds True`` and stored beside the checkpoint; else the stored ones, from the checkpoint's
    thresholds file or the exported model's metadata; else 0.5), the reports, the summary line and ``--out``."""
    names = data.class_names
    probs = np.mean(multilabel_metrics.sigmoid(views), axis=0)
    if cfg.tune_thresholds:
        chosen = multilabel_metrics.tune_thresholds(probs, labels)
        path = thresholds.save_thresholds(cfg.ckpt_path, names, chosen, {"split": split, "tta": cfg.tta,
                                                                          "num_samples": int(len(labels))})
        print(f"thresholds tuned on {split} (best F1 per class): written to {path}")
        source = f"tuned on {split}"
    else:
        stored = (exported.read_metadata(cfg.onnx).get("thresholds") if cfg.onnx
                  else thresholds.stored_thresholds(cfg.ckpt_path, names)[0])
        chosen = stored or [multilabel_metrics.DEFAULT_THRESHOLD] * len(names)
        source = "stored" if stored else f"{multilabel_metrics.DEFAULT_THRESHOLD:g}"
    result = class_report(probs, labels, names, chosen)
    result.update(loss=float(np.mean([multilabel_metrics.bce_loss(v, labels) for v in views])), split=split,
                  checkpoint=model_path, model=cfg.model, num_classes=len(names), tta=cfg.tta, task="multilabel",
                  thresholds_from=source)
    write_reports(report_dir, cfg, result, probs, labels, names)
    print(summary_line(cfg, split, result))
    if cfg.out:
        os.makedirs(os.path.dirname(os.path.abspath(cfg.out)), exist_ok=True)
        atomic_write_text(cfg.out, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        print(f"metrics written to {cfg.out}")


def predict(cfg, data, probs, labels, out, given_thresholds):
    """predict.py for a multi-label model: the predictions file ``out`` at the thresholds (``given_thresholds``:
    the exported model's, else the checkpoint's stored ones, else 0.5), and on a split (labels known) the exact
    match and micro F1. Returns the records (for the grid)."""
    names = data.class_names
    chosen, source = ((given_thresholds, "the exported metadata") if given_thresholds
                      else thresholds.resolve_thresholds(cfg.ckpt_path, names))
    known = np.ndim(labels) == 2
    records = prediction_records(data.paths, labels if known else [None] * len(data.paths), probs, names, chosen)
    write_predictions(out, records, cfg.format)
    print(f"{len(records)} images predicted at thresholds {'from ' + source if source else 'of 0.5'}; predictions "
          f"written to {out}")
    if known:
        summary = multilabel_metrics.summarize(probs, labels, chosen)
        print(f"on {cfg.split or cfg.val_split}: exact match {summary['exact_match']:.4f}, micro F1 "
              f"{summary['micro_f1']:.4f}, mAP {summary['map']:.4f}")
    return records


def grid_records(records, grid_select, count):
    """The records drawn by ``--visualize``: the first ones, or the first whose predicted set is wrong."""
    chosen = records if grid_select == "first" else [r for r in records if r["true"] != r["pred"]]
    return chosen[:count]
