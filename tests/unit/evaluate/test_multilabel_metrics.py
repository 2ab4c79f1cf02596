"""Multi-label metrics (tools/evaluate/multilabel_metrics.py) against independent loops over thresholds, the
scikit-learn documentation's AP example, and the threshold tuning against a brute-force search; the thresholds
file (tools/evaluate/thresholds.py)."""
import json

from tools.evaluate import multilabel_metrics as mm
from tools.evaluate import thresholds

import numpy as np
import pytest

RNG = np.random.default_rng(3)
PROBS = np.round(RNG.random((40, 5)), 2)  # rounded: many ties, which AP must treat as one step
LABELS = (RNG.random((40, 5)) < PROBS * 0.8 + 0.05).astype(np.int64)
LABELS[:, 4] = 0  # a class without positives: left out of mAP and macro F1


def loop_ap(scores, truth):
    """AP by its definition, one threshold at a time: sum over distinct scores t (highest first) of
    (R(t) - R(previous)) * P(t), where predicting score >= t."""
    total, previous = 0.0, 0.0
    for t in sorted(set(scores.tolist()), reverse=True):
        chosen = scores >= t
        hits = int((chosen & (truth > 0)).sum())
        recall = hits / int((truth > 0).sum())
        total += (recall - previous) * hits / int(chosen.sum())
        previous = recall
    return total


def loop_f1(predicted, truth):
    tp = int((predicted & truth).sum())
    fp = int((predicted & ~truth).sum())
    fn = int((~predicted & truth).sum())
    return 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else float("nan")


def test_ap_of_scikit_learns_documentation_example():
    assert mm.average_precision(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.8333333)


def test_per_class_ap_and_map_match_a_loop_over_thresholds():
    ap = mm.per_class_ap(PROBS, LABELS)
    for c in range(4):
        assert ap[c] == pytest.approx(loop_ap(PROBS[:, c], LABELS[:, c]), abs=1e-12)
    assert np.isnan(ap[4])
    result = mm.summarize(PROBS, LABELS)
    assert result["map"] == pytest.approx(np.mean([loop_ap(PROBS[:, c], LABELS[:, c]) for c in range(4)]))
    assert result["map_classes"] == 4


def test_threshold_metrics_match_counts_recomputed_by_hand():
    cuts = np.array([0.3, 0.5, 0.7, 0.4, 0.5])
    result = mm.summarize(PROBS, LABELS, cuts)
    predicted, truth = PROBS >= cuts, LABELS > 0
    assert result["micro_f1"] == pytest.approx(loop_f1(predicted, truth))
    assert result["micro_precision"] == pytest.approx((predicted & truth).sum() / predicted.sum())
    assert result["micro_recall"] == pytest.approx((predicted & truth).sum() / truth.sum())
    assert result["macro_f1"] == pytest.approx(np.mean([loop_f1(predicted[:, c], truth[:, c]) for c in range(4)]))
    assert result["exact_match"] == pytest.approx(np.mean([(p == t).all() for p, t in zip(predicted, truth)]))
    for c in range(4):
        assert result["f1"][c] == pytest.approx(loop_f1(predicted[:, c], truth[:, c]))
        assert result["precision"][c] == pytest.approx((predicted[:, c] & truth[:, c]).sum() / predicted[:, c].sum())
        assert result["recall"][c] == pytest.approx((predicted[:, c] & truth[:, c]).sum() / truth[:, c].sum())
    assert result["support"].tolist() == truth.sum(0).tolist() and np.isnan(result["recall"][4])


def test_tuned_thresholds_reach_the_best_f1_of_a_brute_force_search():
    tuned = mm.tune_thresholds(PROBS, LABELS)
    truth = LABELS > 0
    for c in range(4):
        grid = np.r_[np.linspace(0, 1, 1001), PROBS[:, c]]
        best = max(loop_f1(PROBS[:, c] >= t, truth[:, c]) for t in grid)
        assert loop_f1(PROBS[:, c] >= tuned[c], truth[:, c]) == pytest.approx(best)
        best_cuts = [t for t in PROBS[:, c] if loop_f1(PROBS[:, c] >= t, truth[:, c]) == pytest.approx(best)]
        assert tuned[c] == max(best_cuts)  # of equal F1s the highest threshold
    assert tuned[4] == mm.DEFAULT_THRESHOLD
    assert mm.summarize(PROBS, LABELS, tuned)["macro_f1"] >= mm.summarize(PROBS, LABELS)["macro_f1"]


def test_bce_loss_matches_the_naive_formula():
    logits = RNG.normal(size=(6, 3))
    labels = (RNG.random((6, 3)) < 0.5).astype(np.float64)
    s = 1 / (1 + np.exp(-logits))
    assert mm.bce_loss(logits, labels) == pytest.approx(float(np.mean(-(labels * np.log(s)
                                                                         + (1 - labels) * np.log(1 - s)))))


def test_thresholds_file_round_trips_and_is_ignored_for_another_checkpoint(tmp_path, capsys):
    ckpt = tmp_path / "m.ckpt"
    ckpt.write_bytes(b"weights")
    path = thresholds.save_thresholds(str(ckpt), ["a", "b"], [0.25, 0.75], {"split": "val"})
    assert json.loads(open(path).read())["thresholds"] == {"a": 0.25, "b": 0.75}
    assert thresholds.resolve_thresholds(str(ckpt), ["a", "b"]) == ([0.25, 0.75], path)
    ckpt.write_bytes(b"other weights")
    assert thresholds.resolve_thresholds(str(ckpt), ["a", "b"]) == ([0.5, 0.5], None)
    assert "tuned for another version" in capsys.readouterr().err
