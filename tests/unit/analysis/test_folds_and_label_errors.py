"""The fold assignment (stratified, disjoint, seeded) and confident learning's thresholds, suspects and ranking,
on probabilities written by hand."""
from tools.analysis import cross_validation as cv
from tools.analysis import label_errors
from tools.core.errors import UsageError

import numpy as np
import pytest


def test_folds_are_stratified_disjoint_and_seeded():
    names = ["a", "b", "c"]
    labels = np.array([0] * 10 + [1] * 7 + [2] * 3)
    paths = [f"/x/{names[k]}_{i}.png" for i, k in enumerate(labels)]
    folds = cv.assign_folds(paths, labels, names, 3, seed=0)
    assert sorted(set(folds)) == [1, 2, 3]
    for j in range(3):  # every fold holds floor or ceil of a class's share
        counts = np.bincount(folds[labels == j], minlength=4)[1:]
        assert counts.max() - counts.min() <= 1 and counts.sum() == (labels == j).sum()
    assert np.array_equal(folds, cv.assign_folds(paths, labels, names, 3, seed=0))
    assert not np.array_equal(folds, cv.assign_folds(paths, labels, names, 3, seed=1))
    assert np.array_equal(folds[::-1], cv.assign_folds(paths[::-1], labels[::-1], names, 3, seed=0))  # order-free
    with pytest.raises(UsageError, match="more than the 3 images of class 'c'"):
        cv.check_fold_count(4, labels, names)
    with pytest.raises(UsageError, match=">= 2"):
        cv.check_fold_count(1, labels, names)


def test_thresholds_suspects_and_ranking():
    probs = np.array([
        [0.90, 0.05, 0.05],   # 0: a, sure
        [0.80, 0.10, 0.10],   # 1: a, sure
        [0.05, 0.90, 0.05],   # 2: given a, looks b: suspect
        [0.10, 0.85, 0.05],   # 3: b
        [0.20, 0.70, 0.10],   # 4: b
        [0.10, 0.20, 0.70],   # 5: c
        [0.45, 0.10, 0.45],   # 6: c, at its threshold or above: kept
        [0.60, 0.30, 0.10],   # 7: given c, looks a (a's threshold 0.583): suspect, smaller margin than 2
    ])
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    thresholds = label_errors.class_thresholds(probs, labels)
    np.testing.assert_allclose(thresholds, [(0.9 + 0.8 + 0.05) / 3, (0.85 + 0.7) / 2, (0.7 + 0.45 + 0.1) / 3])
    suspects, suggested, scores = label_errors.find_issues(probs, labels)
    assert suspects.tolist() == [2, 7]
    assert suggested.tolist() == [1, 0]
    np.testing.assert_allclose(scores, [0.90 - 0.05, 0.60 - 0.10])
    lines = label_errors.per_class_counts(labels, suspects, ["a", "b", "c"])
    assert lines == ["a: 1 suspects of 3 images", "c: 1 suspects of 3 images", "b: 0 suspects of 2 images"]
