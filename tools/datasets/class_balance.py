"""How balanced a split's classes are: one summary line, and a warning above a ratio.

With a ratio of 10 or more between the largest and the smallest class, a model can reach a high Top-1
by mostly predicting the large classes; mean per-class accuracy (validate.py reports it) shows it.
"""
import numpy as np

IMBALANCE_OPTIONS = ("class_weights: balanced, sampler: balanced, best_metric: mean_per_class_acc "
                     "(see README, Fine-tuning techniques)")


def class_counts(labels, num_classes):
    """Images per class (of multi-hot labels ``(images, classes)``: images per label)."""
    if np.ndim(labels) == 2:
        return np.asarray(labels).sum(axis=0).astype(np.int64)
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)[:num_classes]


def label_set_summary(split, labels, class_names):
    """One line of a multi-label split: images, labels, images per label min / median / max, labels per image
    min / mean / max and the images without a label."""
    counts, per_image = class_counts(labels, len(class_names)), np.asarray(labels).sum(axis=1)
    line = (f"split '{split}': {len(per_image)} images, {len(counts)} labels; images per label min {int(counts.min())} "
            f"/ median {float(np.median(counts)):g} / max {int(counts.max())}, imbalance ratio "
            f"{imbalance_ratio(counts):.1f}; labels per image min {int(per_image.min())} / mean "
            f"{float(per_image.mean()):.2f} / max {int(per_image.max())}, {int((per_image == 0).sum())} without "
            "a label")
    empty = int((counts == 0).sum())
    if empty:
        line += f"; {empty} labels without images (e.g. '{class_names[int(np.flatnonzero(counts == 0)[0])]}')"
    return line


def imbalance_ratio(counts):
    """Largest over smallest class count (classes without images left out); 1.0 for one class."""
    present = counts[counts > 0]
    return float(present.max() / present.min()) if present.size else 1.0


def summary(split, counts, class_names):
    """One line: images and classes of ``split``, per-class min / median / max and the ratio."""
    empty = int((counts == 0).sum())
    line = (f"split '{split}': {int(counts.sum())} images, {len(counts)} classes; images per class min "
            f"{int(counts.min())} / median {float(np.median(counts)):g} / max {int(counts.max())}, "
            f"imbalance ratio {imbalance_ratio(counts):.1f}")
    if empty:
        first = class_names[int(np.flatnonzero(counts == 0)[0])]
        line += f"; {empty} classes without images (e.g. '{first}')"
    return line


def warning(split, counts, class_names, threshold):
    """The imbalance warning for ``split``, or None when the ratio is at most ``threshold`` (0 = never)."""
    ratio = imbalance_ratio(counts)
    if not threshold or ratio <= threshold:
        return None
    present = np.flatnonzero(counts > 0)
    big, small = present[np.argmax(counts[present])], present[np.argmin(counts[present])]
    return (f"warning: split '{split}' is imbalanced: class '{class_names[big]}' has {counts[big]} images, "
            f"'{class_names[small]}' {counts[small]} (ratio {ratio:.1f} > imbalance_warn_ratio {threshold:g}); "
            f"judge the model by mean per-class accuracy, and consider {IMBALANCE_OPTIONS}")
