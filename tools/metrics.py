"""Classification metrics in numpy, computed from logits and labels."""
import numpy as np


def softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def cross_entropy(logits, labels):
    """Mean cross-entropy of ``logits`` (N, C) against integer ``labels`` (N,)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


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
