"""Classification metrics in numpy, computed from logits (or log-probabilities) and labels."""
import numpy as np


def softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def log_softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def cross_entropy(logits, labels):
    """Mean cross-entropy of ``logits`` (N, C) against integer ``labels`` (N,)."""
    return float(-log_softmax(logits)[np.arange(len(labels)), labels].mean())


def topk_accuracy(logits, labels, k):
    """Fraction of samples whose label is among the ``k`` highest logits (None if k > classes)."""
    if k > logits.shape[1]:
        return None
    topk = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return float((topk == labels[:, None]).any(axis=1).mean())


def summarize(logits, labels):
    """``{top1, top5, loss, num_samples}``; top5 is None with fewer than 5 classes."""
    return {
        "top1": topk_accuracy(logits, labels, 1),
        "top5": topk_accuracy(logits, labels, 5),
        "loss": cross_entropy(logits, labels),
        "num_samples": int(len(labels)),
    }


def confusion_matrix(labels, preds, num_classes):
    """``(C, C)`` counts: row = true class, column = predicted class."""
    labels, preds = np.asarray(labels, np.int64), np.asarray(preds, np.int64)
    return np.bincount(labels * num_classes + preds, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def _ratio(num, den):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.maximum(den, 1), np.nan)


def per_class_accuracy(matrix):
    """``(support, correct, accuracy)`` per class; accuracy is NaN for a class without samples."""
    support, correct = matrix.sum(axis=1), np.diag(matrix)
    return support, correct, _ratio(correct, support)


def precision_recall_f1(matrix):
    """``(precision, recall, f1, support)`` per class from a confusion matrix.

    Precision is NaN for a class never predicted, recall for a class without samples;
    F1 = 2 TP / (2 TP + FP + FN), the harmonic mean of the two where both exist and 0 when a class
    with samples is never found (NaN only for a class neither present nor predicted).
    """
    support, correct = matrix.sum(axis=1), np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0)
    return _ratio(correct, predicted), _ratio(correct, support), _ratio(2 * correct, support + predicted), support


def f1_averages(matrix):
    """``(macro_f1, weighted_f1)``: the mean of the per-class F1 over the classes that have samples,
    plain and weighted by support."""
    _, _, f1, support = precision_recall_f1(matrix)
    present = support > 0
    return float(f1[present].mean()), float((f1[present] * support[present]).sum() / support[present].sum())


def as_score(metric, value):
    """``value`` of ``metric`` (top1, mean_per_class_acc, val_loss) on a scale where higher is better:
    val_loss is negated. The best epoch and top_k checkpoints are chosen by it."""
    return -value if metric == "val_loss" else value


def mean_per_class_accuracy(labels, preds, num_classes):
    """Mean of the per-class accuracies over the classes that have samples (balanced accuracy)."""
    _, _, accuracy = per_class_accuracy(confusion_matrix(labels, preds, num_classes))
    return float(np.nanmean(accuracy))


def confused_indices(matrix):
    """``[(true, pred)]`` class indices of the off-diagonal cells with a count, most frequent first."""
    pairs = [(int(matrix[i, j]), int(i), int(j)) for i, j in zip(*np.nonzero(matrix)) if i != j]
    pairs.sort(key=lambda item: (-item[0], item[1], item[2]))
    return [(i, j) for _, i, j in pairs]


def most_confused(matrix, class_names):
    """Off-diagonal cells with a count, most frequent first: ``[(true, pred, count, share of true)]``."""
    support = matrix.sum(axis=1)
    return [(class_names[i], class_names[j], int(matrix[i, j]), matrix[i, j] / support[i])
            for i, j in confused_indices(matrix)]
