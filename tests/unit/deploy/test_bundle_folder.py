"""tools/deploy/bundle.py: the --out rule (which folders a bundle may take), requirements.txt pinned to the
project's, validate.py's metrics taken only when they are of this checkpoint, the model card."""
import json
import os
import time
from types import SimpleNamespace

from conftest import ROOT
from tools.core.errors import UsageError
from tools.deploy import bundle

import pytest


def test_the_default_bundle_is_named_after_the_checkpoint():
    assert bundle.bundle_dir("", "runs/demo/mobilenet_v2_100_best.ckpt") == "runs/demo/mobilenet_v2_100_best_bundle"
    assert bundle.bundle_dir("out/here", "runs/x.ckpt") == "out/here"


def test_a_new_folder_an_empty_one_and_an_earlier_bundle_are_taken(tmp_path):
    bundle.check_bundle_dir(str(tmp_path / "new" / "bundle"), "out")
    (tmp_path / "empty").mkdir()
    bundle.check_bundle_dir(str(tmp_path / "empty"), "out")
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    for name in bundle.BUNDLE_FILES:
        (earlier / name).write_text("x")
    bundle.check_bundle_dir(str(earlier), "out")


@pytest.mark.parametrize("make, needle", [
    (lambda p: p.write_text("x"), "is a file, not a folder"),
    (lambda p: (p.mkdir(), (p / "model.classes.json").write_text("{}"), (p / "holiday.jpg").write_text("x")),
     "holds files other than an earlier bundle's (holiday.jpg)"),
    (lambda p: (p.mkdir(), (p / "README.md").write_text("my project")), "holds files other than an earlier bundle's "
                                                                        "(README.md)"),   # no metadata: not a bundle
    (lambda p: (p.mkdir(), (p / "model.classes.json").write_text("{}"), (p / "predict.py").mkdir()),
     "(predict.py)"),                                                                     # a folder of that name
])
def test_any_other_output_place_is_refused_and_left_alone(tmp_path, make, needle):
    path = tmp_path / "out"
    make(path)
    before = sorted(os.walk(tmp_path))
    with pytest.raises(UsageError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        bundle.check_bundle_dir(str(path), "out")
    assert sorted(os.walk(tmp_path)) == before


def test_a_model_file_name_is_refused():
    with pytest.raises(UsageError, match="looks like a file name: --out names the bundle folder"):
        bundle.check_bundle_dir("runs/demo/model.onnx", "out")


def test_requirements_are_the_projects_pins():
    with open(os.path.join(ROOT, "requirements.txt"), encoding="utf-8") as f:
        pins = {line.split("==")[0].lower(): line.strip() for line in f if "==" in line and not line.startswith("#")}
    lines = [line for line in bundle.requirements_text().splitlines() if not line.startswith("#")]
    assert lines == [pins["onnxruntime"], pins["numpy"], pins["pillow"]]


def _metrics(tmp_path, checkpoint="best.ckpt", age=0.0):
    ckpt = tmp_path / "best.ckpt"
    ckpt.write_bytes(b"weights")
    path = tmp_path / "report_best_test" / "metrics.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"checkpoint": f"runs/{checkpoint}", "top1": 0.8125, "num_samples": 200,
                                "macro_f1": 0.8, "loss": 0.61, "ece": 0.03}))
    now = time.time()
    os.utime(ckpt, (now, now))
    os.utime(path, (now + age, now + age))
    return str(path), str(ckpt)


def test_validation_metrics_only_of_this_checkpoint_and_newer_than_it(tmp_path):
    assert bundle.validation_metrics(*_metrics(tmp_path))["top1"] == 0.8125
    assert bundle.validation_metrics(*_metrics(tmp_path, age=-60)) is None          # the checkpoint changed since
    assert bundle.validation_metrics(*_metrics(tmp_path, checkpoint="last.ckpt")) is None
    assert bundle.validation_metrics(str(tmp_path / "none.json"), str(tmp_path / "best.ckpt")) is None


def _card(tmp_path, metrics_path, ckpt, input_diff=0.0):
    cfg = SimpleNamespace(ckpt_path=ckpt, data_dir="data/fashion_mnist", dataset="", train_split="trainval",
                          val_split="test")
    meta = {"model": "mobilenet_v2_100", "input_shape": [1, 3, 96, 96], "class_names": ["T-shirt/top", "Ankle boot"],
            "temperature": 1.25, "preprocessing": {"resize": 96, "crop": 96, "interpolation": "bilinear",
                                                   "mean": [127.5] * 3, "std": [127.5] * 3},
            "parity_check": {"images": ["a.jpg", "b.jpg"], "per_format": {
                "MINDIR": {"max_abs_logit_diff": 0.0, "max_abs_prob_diff": 0.0},
                "ONNX": {"max_abs_logit_diff": 2.4e-7, "max_abs_prob_diff": 5.9e-8}}}}
    folder = tmp_path / "bundle"
    folder.mkdir(exist_ok=True)
    (folder / "model.onnx").write_bytes(b"onnx")
    bundle.write_standalone(str(folder))
    bundle.write_model_card(str(folder), cfg, meta, metrics_path, input_diff)
    return (folder / "README.md").read_text(encoding="utf-8")


def test_the_model_card_names_model_data_classes_metrics_parity_and_how_to_run(tmp_path):
    card = _card(tmp_path, *_metrics(tmp_path))
    for text in ("# mobilenet_v2_100 fine-tuned on fashion_mnist", "`softmax(logits / 1.2500)`",
                 "fitted by validate.py --calibrate", "trained on split `trainval`, validated on `test`",
                 "  0. T-shirt/top\n  1. Ankle boot", "| num_samples | top1 | macro_f1 | loss | ece |",
                 "| 200 | 0.8125 | 0.8000 | 0.6100 | 0.0300 |", "`report_best_test/metrics.json`",
                 "ONNX in ONNX Runtime: max |logit diff| 2.40e-07, max |probability diff| 5.90e-08",
                 "max |diff| 0.00e+00 (bit for bit)", "env/bin/python predict.py IMAGE_OR_FOLDER",
                 "| `model.onnx` |", "| `predict.py` |", "| `requirements.txt` |", "| `README.md` |"):
        assert text in card, text
    assert "model.mindir" not in card.split("## Files")[1] and "model.int8.onnx" not in card   # only what is there


def test_the_model_card_says_when_validate_py_has_not_run(tmp_path):
    ckpt = tmp_path / "best.ckpt"
    ckpt.write_bytes(b"weights")
    card = _card(tmp_path, str(tmp_path / "report_best_test" / "metrics.json"), str(ckpt))
    assert "Not validated: validate.py has written no metrics for this checkpoint on `test`" in card


def test_write_standalone_copies_predict_py_verbatim_and_only_beside_an_onnx_model(tmp_path):
    bundle.write_standalone(str(tmp_path))
    assert os.listdir(tmp_path) == []     # a MindIR-only bundle: nothing to run it with
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    bundle.write_standalone(str(tmp_path))
    assert (tmp_path / "predict.py").read_bytes() == open(bundle.STANDALONE, "rb").read()
    assert sorted(os.listdir(tmp_path)) == ["model.onnx", "predict.py", "requirements.txt"]
