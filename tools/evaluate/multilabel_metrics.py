"""Multi-label metrics in numpy, from sigmoid probabilities ``(N, C)`` and multi-hot labels ``(N, C)`` (0/1).

* AP of a class is scikit-learn's ``average_precision_score``: ``sum_n (R_n - R_{n-1}) P_n`` over the distinct
  scores taken as thresholds, highest first (no interpolation; tied scores form one step). It is undefined for a
  class with no positive image in the split: such classes are left out of mAP (and named by :func:`summarize`).
* mAP is the macro mean of the per-class APs of the classes with positives.
* At the thresholds (a label is predicted when its probability is >= its class's threshold): micro precision,
  recall and F1 (from the TP/FP/FN summed over all classes), macro F1 (the mean per-class F1 over the classes
  with positives; per-class F1 = 2 TP / (2 TP + FP + FN)), and the exact-match ratio (images whose predicted set
  equals their label set).
* :func:`tune_thresholds`: per class, the threshold that maximises that class's F1 on the split.
"""
import numpy as np

DEFAULT_THRESHOLD = 0.5


def sigmoid(logits):
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))


def bce_loss(logits, labels):
    """Mean binary cross-entropy over every (image, class) of ``logits`` against 0/1 ``labels`` (stable form)."""
    x, y = np.asarray(logits, np.float64), np.asarray(labels, np.float64)
    return float(np.mean(np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))))


def _ranked_counts(scores, positives):
    """``(thresholds, tp, predicted)`` at each distinct score, highest first: what predicting every image whose
    score is >= that threshold finds (true positives) and predicts."""
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], positives[order]
    last = np.r_[np.flatnonzero(np.diff(ranked) != 0), len(ranked) - 1]  # the last image of each distinct score
    return ranked[last], np.cumsum(hits)[last], last + 1


def precision_recall_curve(scores, positives):
    """``(recall, precision)`` of one class at each distinct score taken as threshold, highest first (a class
    with positives)."""
    positives = np.asarray(positives) > 0
    _, tp, predicted = _ranked_counts(np.asarray(scores, np.float64), positives)
    return tp / positives.sum(), tp / predicted


def average_precision(scores, positives):
    """AP of one class (scikit-learn's definition, see the module docstring); NaN without a positive."""
    if not (np.asarray(positives) > 0).any():
        return float("nan")
    recall, precision = precision_recall_curve(scores, positives)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def per_class_ap(probs, labels):
    return np.array([average_precision(probs[:, c], labels[:, c]) for c in range(probs.shape[1])])


def _ratio(num, den):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.maximum(den, 1), np.nan)


def confusion_counts(probs, labels, thresholds):
    """``(tp, fp, fn)`` per class at ``thresholds`` (one per class, or one for all)."""
    predicted, truth = predictions(probs, thresholds), np.asarray(labels) > 0
    return ((predicted & truth).sum(0), (predicted & ~truth).sum(0), (~predicted & truth).sum(0))


def predictions(probs, thresholds):
    """The predicted label sets as a boolean ``(N, C)``: probability >= the class's threshold."""
    return np.asarray(probs) >= np.broadcast_to(np.asarray(thresholds, np.float64), np.shape(probs)[1:])


def summarize(probs, labels, thresholds=DEFAULT_THRESHOLD):
    """The metrics of the module docstring: ``map``, ``map_classes`` (classes in mAP), ``micro_precision``,
    ``micro_recall``, ``micro_f1``, ``macro_f1``, ``exact_match``, ``num_samples``, and per class ``ap``,
    ``precision``, ``recall``, ``f1`` and ``support`` (positives) arrays (NaN where undefined)."""
    labels = np.asarray(labels) > 0
    tp, fp, fn = confusion_counts(probs, labels, thresholds)
    support, ap = labels.sum(0), per_class_ap(probs, labels)
    present = support > 0
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    total_tp, total_fp, total_fn = int(tp.sum()), int(fp.sum()), int(fn.sum())
    return {
        "map": float(ap[present].mean()) if present.any() else float("nan"), "map_classes": int(present.sum()),
        "micro_precision": float(_ratio(np.array(total_tp), np.array(total_tp + total_fp))),
        "micro_recall": float(_ratio(np.array(total_tp), np.array(total_tp + total_fn))),
        "micro_f1": float(_ratio(np.array(2 * total_tp), np.array(2 * total_tp + total_fp + total_fn))),
        "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
        "exact_match": float((predictions(probs, thresholds) == labels).all(axis=1).mean()),
        "num_samples": int(len(labels)),
        "ap": ap, "precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn), "f1": f1, "support": support,
    }


def tune_thresholds(probs, labels):
    """One threshold per class maximising its F1 on ``(probs, labels)``: the candidates are the class's distinct
    probabilities (predicting the images at or above one); of equal F1s the highest threshold wins. A class
    without positives keeps ``DEFAULT_THRESHOLD``."""
    labels = np.asarray(labels) > 0
    thresholds = np.full(probs.shape[1], DEFAULT_THRESHOLD)
    for c in range(probs.shape[1]):
        positives = labels[:, c].sum()
        if positives == 0:
            continue
        candidates, tp, predicted = _ranked_counts(np.asarray(probs[:, c], np.float64), labels[:, c])
        f1 = 2 * tp / (predicted + positives)
        thresholds[c] = candidates[int(np.argmax(f1))]  # argmax: the first (highest) of the best
    return thresholds
