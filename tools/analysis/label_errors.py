"""Label errors found from out-of-fold probabilities by confident learning (Northcutt et al., 2021): a model
that never saw an image says how sure it is of each class, and an image whose given label it doubts while it
is sure of another class is a suspect. Nothing in the data is changed; ``write_clean_list`` writes a list-layout
CSV without the suspects for a retrain.

* The threshold of class j is the mean self-confidence of the images given class j: ``t_j = mean p_j(x)`` over
  ``x`` labelled j (a class the model finds hard gets a low bar, an easy one a high bar).
* A suspect: ``p_given(x) < t_given`` and some other class j has ``p_j(x) >= t_j``; its suggested label is the
  likeliest of those classes.
* Score (the ranking): the margin ``p_suggested(x) - p_given(x)``, largest first.
"""
import csv
import os

from tools.analysis.cross_validation import PROB_PREFIX
from tools.core.errors import DataError
from tools.datasets.splitting import HEADER
from tools.report import evaluation as reports

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

ISSUES_FILE, GRID_FILE = "label_issues.csv", "label_issues.png"
ISSUES_HEADER = ["rank", "image", "given_label", "suggested_label", "score", "given_prob", "suggested_prob"]


def class_thresholds(probs, labels):
    """Per class, the mean probability of that class over the images labelled with it (NaN without images)."""
    num_classes = probs.shape[1]
    counts = np.bincount(labels, minlength=num_classes)
    sums = np.bincount(labels, weights=probs[np.arange(len(labels)), labels], minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def find_issues(probs, labels):
    """``(suspects, suggested, scores)``: image indices ranked by score (largest first), each one's suggested
    class and score (see the module docstring)."""
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels, np.int64)
    thresholds = class_thresholds(probs, labels)
    rows = np.arange(len(labels))
    given = probs[rows, labels]
    confident = probs >= np.nan_to_num(thresholds, nan=np.inf)[None, :]
    confident[rows, labels] = False
    candidates = np.where(confident, probs, -np.inf)
    suggested = candidates.argmax(axis=1)
    suspect = (given < thresholds[labels]) & confident.any(axis=1)
    scores = probs[rows, suggested] - given
    order = np.flatnonzero(suspect)
    order = order[np.lexsort((order, -scores[order]))]  # largest margin first, ties in image order
    return order, suggested[order], scores[order]


def read_oof(path):
    """``(images, labels, folds, probs, class_names)`` of an ``oof_predictions.csv`` written by cross_validate.py;
    anything else is a one-line error naming the file."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            table = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read {path}: {getattr(err, 'strerror', None) or err.__class__.__name__}") from None
    if not table or table[0][:3] != ["image", "label", "fold"] or len(table[0]) < 5 or not all(
            name.startswith(PROB_PREFIX) for name in table[0][3:]):
        raise DataError(f"{path} is not an oof_predictions.csv of cross_validate.py (header image,label,fold,"
                        f"{PROB_PREFIX}<class>,...)")
    names = [name[len(PROB_PREFIX):] for name in table[0][3:]]
    index = {name: i for i, name in enumerate(names)}
    images, labels, folds, probs = [], [], [], []
    for lineno, row in enumerate(table[1:], 2):
        try:
            if len(row) != len(table[0]) or row[1] not in index:
                raise ValueError
            images.append(row[0])
            labels.append(index[row[1]])
            folds.append(int(row[2]))
            probs.append([float(v) for v in row[3:]])
        except ValueError:
            raise DataError(f"{path}:{lineno}: malformed row (expected an image, a class of the header, a fold and "
                            f"{len(names)} probabilities)") from None
    if not images:
        raise DataError(f"{path} holds no predictions")
    return images, np.array(labels), np.array(folds), np.array(probs), names


def per_class_counts(labels, suspects, class_names):
    """Lines ``<class>: S suspects of N images``, most suspects first."""
    counts = np.bincount(labels[suspects], minlength=len(class_names)) if len(suspects) else \
        np.zeros(len(class_names), np.int64)
    totals = np.bincount(labels, minlength=len(class_names))
    order = sorted(range(len(class_names)), key=lambda j: (-counts[j], j))
    return [f"{class_names[j]}: {counts[j]} suspects of {totals[j]} images" for j in order]


def write_issues(out_dir, images, labels, probs, class_names, grid_size=16):
    """``label_issues.csv`` and ``label_issues.png`` (the top ``grid_size`` suspects) in ``out_dir``; returns
    ``(suspect indices ranked, lines per class)``."""
    suspects, suggested, scores = find_issues(probs, labels)
    rows = [[rank, images[i], class_names[labels[i]], class_names[s], float(score), float(probs[i, labels[i]]),
             float(probs[i, s])] for rank, (i, s, score) in enumerate(zip(suspects, suggested, scores), 1)]
    reports.write_csv(os.path.join(out_dir, ISSUES_FILE), ISSUES_HEADER, rows)
    grid = os.path.join(out_dir, GRID_FILE)
    if rows and grid_size:
        plot_suspects(rows[:grid_size], grid)
    elif os.path.isfile(grid):
        os.remove(grid)  # an earlier run's suspects are not this one's
    return suspects, per_class_counts(labels, suspects, class_names)


def plot_suspects(rows, png_path):
    """The suspects' pictures, each titled with its rank, given label and suggested label with their probabilities."""
    nrows, ncols = reports.grid_shape(len(rows))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * reports.GRID_CELL_INCHES, nrows * reports.GRID_CELL_INCHES),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (rank, image, given, suggested, _, given_prob, suggested_prob) in zip(axes.flat, rows):
        with Image.open(image) as picture:
            ax.imshow(np.asarray(picture.convert("RGB")))
        ax.set_title(f"#{rank} given: {given} ({given_prob:.2f})\nsuggested: {suggested} ({suggested_prob:.2f})",
                     color=reports.WRONG, fontsize=8)
    fig.tight_layout()
    reports.save_figure(fig, png_path)


def write_clean_list(path, images, labels, class_names, suspects):
    """A list-layout CSV (``image,label``; absolute image paths) of every image but the suspects."""
    dropped = set(int(i) for i in suspects)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    reports.write_csv(path, HEADER, [[image, class_names[k]] for i, (image, k) in enumerate(zip(images, labels))
                                     if i not in dropped])
    return len(images) - len(dropped)
