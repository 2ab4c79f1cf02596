"""Multi-label training pieces (tools/train/multilabel.py, tools/train/tasks.py): the BCE loss with binary label
smoothing and per-label positive weights, recomputed in numpy; the balanced positive weights; the validation row."""
import argparse

from tools.core.config import option_table
from tools.core.errors import UsageError
from tools.evaluate.inference import evaluate
from tools.train import tasks
from tools.train.multilabel import MultiLabelBCE, positive_weights

import numpy as np
import pytest
from mindspore import Tensor

RNG = np.random.default_rng(0)
LOGITS = RNG.normal(size=(6, 4)).astype(np.float32)
LABELS = (RNG.random((6, 4)) < 0.4).astype(np.float32)


def numpy_bce(logits, targets, pos_weight=None):
    """PyTorch's BCEWithLogitsLoss definition: -(w_pos y log s(x) + (1 - y) log(1 - s(x))), mean."""
    x, y = logits.astype(np.float64), targets.astype(np.float64)
    w = np.ones(x.shape[1]) if pos_weight is None else np.asarray(pos_weight, np.float64)
    log_s, log_not_s = -np.log1p(np.exp(-x)), -np.log1p(np.exp(x))
    return float(np.mean(-(w * y * log_s + (1 - y) * log_not_s)))


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_bce_with_binary_label_smoothing(smoothing):
    got = float(MultiLabelBCE(smoothing)(Tensor(LOGITS), Tensor(LABELS)).asnumpy())
    assert got == pytest.approx(numpy_bce(LOGITS, LABELS * (1 - smoothing) + smoothing / 2), rel=1e-5)


def test_bce_with_per_label_positive_weights():
    weights = np.array([1.0, 3.0, 0.5, 2.0], np.float32)
    got = float(MultiLabelBCE(pos_weight=weights)(Tensor(LOGITS), Tensor(LABELS)).asnumpy())
    assert got == pytest.approx(numpy_bce(LOGITS, LABELS, weights), rel=1e-5)
    assert got != pytest.approx(numpy_bce(LOGITS, LABELS), rel=1e-3)


def test_balanced_positive_weights_are_negatives_over_positives():
    labels = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0]], np.float32)
    np.testing.assert_allclose(positive_weights("balanced", labels, 3), [1 / 3, 3.0, 1.0])
    np.testing.assert_array_equal(positive_weights([2, 1, 1], labels, 3), [2, 1, 1])
    assert positive_weights(None, labels, 3) is None
    with pytest.raises(UsageError, match="class_weights has 2 weights but the data has 3 classes"):
        positive_weights([1, 2], labels, 3)


def config(**values):
    cfg = {key: spec[0] for key, spec in option_table().items()}
    cfg.update(values)
    return argparse.Namespace(**cfg)


def test_the_task_of_a_config_builds_its_loss():
    cfg = config(task="multilabel", loss="bce", label_smoothing=0.1, best_metric="map")
    loss = tasks.of(cfg).loss(cfg, None)
    assert isinstance(loss, MultiLabelBCE) and loss.smoothing == 0.1
    assert tasks.of(config()) is tasks.SINGLE and tasks.of(argparse.Namespace()) is tasks.SINGLE


class _Fixed:
    """A 'network' returning fixed logits, and a loader of their labels (what evaluate reads)."""

    training = False

    def set_train(self, mode=True):
        pass

    def __call__(self, images):
        return Tensor(LOGITS)


class _Loader:
    def create_tuple_iterator(self, num_epochs=1, output_numpy=True):
        return iter([(np.zeros((6, 3, 2, 2), np.float32), LABELS)])


def test_multilabel_validation_row_is_val_loss_map_and_f1():
    row = evaluate(_Fixed(), _Loader(), 6, tasks.MULTILABEL)
    assert list(row) == ["val_loss", "map", "f1"]
    assert row["val_loss"] == pytest.approx(numpy_bce(LOGITS, LABELS), rel=1e-6)
    predicted = LOGITS >= 0  # sigmoid >= 0.5
    truth = LABELS > 0
    tp, fp, fn = (predicted & truth).sum(), (predicted & ~truth).sum(), (~predicted & truth).sum()
    assert row["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))


def test_single_label_validation_row_is_unchanged():
    labels = np.array([0, 1, 2, 3, 0, 1])
    row = tasks.SINGLE.validation(LOGITS, labels)
    assert list(row) == ["val_loss", "top1", "top5", "mean_per_class_acc"] and row["top5"] is None
    assert row["top1"] == pytest.approx(float(np.mean(LOGITS.argmax(1) == labels)))


def test_single_label_results_table_and_epoch_line_are_unchanged(tmp_path):
    from tools.train.checkpoints import write_results
    from tools.train.trainer import _epoch_line

    row = {"epoch": 1, "train_loss": 1.5, "val_loss": 1.25, "top1": 0.5, "top5": None, "mean_per_class_acc": 0.25,
           "lr": 0.001, "seconds": 2.0}
    write_results(str(tmp_path), [row])
    assert open(tmp_path / "results.csv").read().splitlines() == [
        "epoch,train_loss,val_loss,top1,top5,mean_per_class_acc,lr,seconds", "1,1.5,1.25,0.5,,0.25,0.001,2.0"]
    assert _epoch_line(3, row, tasks.SINGLE.columns) == ("epoch 1/3  train_loss 1.5000  val_loss 1.2500  top1 0.5000  "
                                                        "mean_per_class_acc 0.2500  lr 0.001  2.0s")
    assert _epoch_line(3, dict(row, top1=None, val_loss=None), tasks.SINGLE.columns) == (
        "epoch 1/3  train_loss 1.5000  lr 0.001  2.0s")


def test_single_label_export_metadata_has_no_task_key():
    from tools.evaluate.exported import metadata

    cfg = config()
    assert "task" not in metadata(cfg, ["a", "b"], [1, 3, 8, 8], 1.0, None)
    assert metadata(cfg, ["a", "b"], [1, 3, 8, 8], 1.0, None, [0.25, 0.5])["thresholds"] == [0.25, 0.5]
