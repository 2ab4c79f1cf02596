"""OOD scores and metrics against brute-force numpy: AUROC as the share of (in, out) pairs ordered right, FPR at
95% TPR from the sorted in-distribution scores, energy as T * log(sum(exp(z / T)))."""
import math

from tools.analysis import ood

import numpy as np
import pytest


def test_auroc_and_fpr_equal_brute_force_with_ties():
    rng = np.random.default_rng(0)
    inside = np.round(rng.normal(1.0, 1.0, 57), 1)  # rounded: many ties
    outside = np.round(rng.normal(0.0, 1.0, 31), 1)
    pairs = (inside[:, None] > outside[None, :]).mean() + 0.5 * (inside[:, None] == outside[None, :]).mean()
    assert ood.auroc(inside, outside) == pytest.approx(pairs, abs=1e-12)
    assert ood.auroc(outside + 100, outside) == 1.0 and ood.auroc(outside, outside + 100) == 0.0
    threshold = ood.threshold_at_tpr(inside, 0.95)
    assert np.mean(inside >= threshold) >= 0.95
    assert np.mean(inside > threshold) < 0.95 or threshold == inside.max()  # the largest such score
    assert ood.fpr_at_tpr(inside, outside) == pytest.approx(np.mean(outside >= threshold))


def test_threshold_keeps_exactly_the_asked_share():
    inside = np.arange(1, 101) / 100.0
    assert ood.threshold_at_tpr(inside, 0.95) == pytest.approx(0.06)   # 0.06 .. 1.00: 95 images
    assert ood.threshold_at_tpr(inside, 0.5) == pytest.approx(0.51)


def test_scores_with_a_temperature_and_two_views():
    rng = np.random.default_rng(1)
    views = rng.normal(0, 3, (2, 5, 4))
    found = ood.scores(views, 2.0)
    probs = np.mean([np.exp(v / 2) / np.exp(v / 2).sum(axis=1, keepdims=True) for v in views], axis=0)
    np.testing.assert_allclose(found["msp"], probs.max(axis=1))
    np.testing.assert_allclose(found["energy"], np.mean([2 * np.log(np.exp(v / 2).sum(axis=1)) for v in views], 0))


def test_min_prob_values():
    assert ood.min_prob_value("auto") == "auto" and ood.min_prob_value(" AUTO ") == "auto"
    assert ood.min_prob_value("0.25") == 0.25 and ood.min_prob_value(0.5) == 0.5
    for bad in ("high", True):
        with pytest.raises(ValueError):
            ood.min_prob_value(bad)
    assert math.isnan(ood.min_prob_value("nan"))  # refused by predict.py's range check, as before
