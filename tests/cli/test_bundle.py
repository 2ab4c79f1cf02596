"""export.py's bundle (tools/deploy/bundle.py): its predict.py, run where MindSpore, MindCV and the suite cannot be
imported, gives the suite's predict.py --ckpt_path predictions on every demo test image; its one-line errors; the
--out rule (a bundle folder, an earlier bundle replaced whole, other folders refused)."""
import os
import shutil
import subprocess
import sys

from conftest import DEMO, ROOT, assert_one_line_error, make_inputs, read_predictions, run_main, run_parallel

import numpy as np
import pytest

CONFIG = os.path.join(ROOT, "configs", "demo.yaml")
# Runs a script as on a machine without MindSpore, MindCV and the suite: importing them fails. With
# STOP_WITH=SIGINT|SIGTERM the process signals itself when the model first runs (a Ctrl-C mid-prediction).
NO_SUITE = '''import os, runpy, signal, sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("mindspore", "mindcv", "tools"):
            raise ImportError("not on this machine: " + name)
sys.meta_path.insert(0, Refuse())
if os.environ.get("STOP_WITH"):
    import onnxruntime
    run = onnxruntime.InferenceSession.run
    def stopping(self, *args, **kwargs):
        os.kill(os.getpid(), getattr(signal, os.environ["STOP_WITH"]))
        return run(self, *args, **kwargs)
    onnxruntime.InferenceSession.run = stopping
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
'''


def _demo_checkpoint(path):
    """The demo's network (MobileNetV2 at 96 px, TensorFlow padding) with seeded random weights for the 10
    Fashion-MNIST classes (a clean clone has no converted Keras weights; README's Deploy section gives the same
    comparison on the fine-tuned demo checkpoint)."""
    from tools.core.config import parse_config
    from tools.models.factory import create_network
    from tools.train.checkpoints import save_weights

    import mindspore as ms

    with open(os.path.join(DEMO, "variants.txt"), encoding="utf-8") as f:
        classes = [line.strip() for line in f if line.strip()]
    ms.set_seed(0)
    network = create_network(parse_config(["--config", CONFIG, "--ckpt_path", "", "--pretrained", "False"], "t"),
                             len(classes))
    save_weights(network, path, classes)
    del network
    return classes


@pytest.fixture(scope="module")
def demo_bundle(tmp_path_factory):
    """The demo checkpoint exported (twice: once into a folder holding an earlier bundle) and predicted on the
    test split by the suite's predict.py --ckpt_path, all classes listed."""
    tmp = tmp_path_factory.mktemp("bundle")
    ckpt = str(tmp / "demo.ckpt")
    classes = _demo_checkpoint(ckpt)
    earlier = tmp / "earlier"
    earlier.mkdir()
    for name in ("model.classes.json", "model.int8.onnx", "README.md"):
        (earlier / name).write_text("an earlier bundle's file")
    base = ("--config", CONFIG, "--ckpt_path", ckpt, "--mode", "1")
    export, again, suite = run_parallel(
        ("export.py", *base, "--out", tmp / "bundle"), ("export.py", *base, "--out", earlier),
        ("predict.py", *base, "--split", "test", "--topk", "10", "--out_dir", tmp / "suite"))
    for proc in (export, again, suite):
        assert proc.returncode == 0, proc.stderr
    copy = tmp / "elsewhere" / "bundle"   # the user's machine: the folder copied away from the repository
    shutil.copytree(tmp / "bundle", copy)
    (tmp / "no_suite.py").write_text(NO_SUITE)
    return dict(tmp=tmp, bundle=str(copy), classes=classes, export=export, again=again, earlier=earlier,
                suite=os.path.join(tmp, "suite", "predictions_demo_test.csv"))


def run_bundle(demo_bundle, *args, cwd=None, stop_with=None, bundle=None):
    """The bundle's predict.py in a process where importing MindSpore, MindCV or tools/ fails."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if stop_with:
        env["STOP_WITH"] = stop_with
    script = os.path.join(bundle or demo_bundle["bundle"], "predict.py")
    return subprocess.run([sys.executable, str(demo_bundle["tmp"] / "no_suite.py"), script, *map(str, args)],
                          cwd=cwd or demo_bundle["tmp"], env=env, capture_output=True, text=True, timeout=300)


def _distributions(path, classes):
    """``(files, top-1 classes, probabilities (N, C) in class order)`` of a predictions CSV listing every class."""
    _, rows = read_predictions(path)
    probs = np.array([[float({r[f"top{i}"]: r[f"top{i}_prob"] for i in range(1, len(classes) + 1)}[c])
                       for c in classes] for r in rows])
    return [r["file"] for r in rows], [r["top1"] for r in rows], probs


def test_the_bundle_predicts_what_the_suite_predicts_without_mindspore(demo_bundle, tmp_path):
    """Done-when of issue 26: every test image of the demo, same top-1, probabilities within 1e-4 of the suite's
    predict.py --ckpt_path (MindSpore), from a copy of the bundle run where MindSpore cannot be imported."""
    files, top1, probs = _distributions(demo_bundle["suite"], demo_bundle["classes"])
    assert len(files) == 200
    proc = run_bundle(demo_bundle, *files, "--out", tmp_path / "preds.csv", "--top_k", "10", cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and "200 images predicted" in proc.stdout
    header, _ = read_predictions(tmp_path / "preds.csv")
    assert header == read_predictions(demo_bundle["suite"])[0]     # the suite's columns
    mine_files, mine_top1, mine_probs = _distributions(tmp_path / "preds.csv", demo_bundle["classes"])
    assert mine_files == files and mine_top1 == top1
    assert len(set(top1)) > 1 and probs.max(axis=1).min() < 0.9    # a model whose answers depend on the image
    np.testing.assert_allclose(mine_probs, probs, rtol=0, atol=1e-4)
    print(f"max |probability difference| bundle vs suite on 200 images: {np.abs(mine_probs - probs).max():.1e}")


def test_the_bundle_folder_holds_what_a_user_needs(demo_bundle):
    bundle = demo_bundle["bundle"]
    assert sorted(os.listdir(bundle)) == ["README.md", "model.classes.json", "model.mindir", "model.onnx",
                                          "predict.py", "requirements.txt"]
    assert open(os.path.join(bundle, "predict.py"), "rb").read() == \
        open(os.path.join(ROOT, "tools", "deploy", "standalone_predict.py"), "rb").read()
    pins = {line.strip() for line in open(os.path.join(ROOT, "requirements.txt"))
            if line.lower().startswith(("onnxruntime==", "numpy==", "pillow=="))}
    assert {line.strip() for line in open(os.path.join(bundle, "requirements.txt")) if "==" in line} == pins
    card = open(os.path.join(bundle, "README.md"), encoding="utf-8").read()
    for text in ("# mobilenet_v2_100 fine-tuned on fashion_mnist", "Ankle boot", "T-shirt/top", "resize the shorter "
                 "side to 96 (bilinear)", "ONNX in ONNX Runtime: max |logit diff|", "bit for bit", "Not validated",
                 "pip install -r requirements.txt", "| `predict.py` |"):
        assert text in card, text
    stdout = demo_bundle["export"].stdout
    assert "bundle check: predict.py's model input = the suite's on 4 images (max |diff| 0.00e+00)" in stdout
    assert f"bundle written to {demo_bundle['tmp'] / 'bundle'}: README.md, model.classes.json" in stdout


def test_an_earlier_bundle_is_replaced_whole(demo_bundle):
    """The folder held an earlier bundle (with a file today's export does not write): now exactly the new one."""
    assert demo_bundle["again"].returncode == 0, demo_bundle["again"].stderr
    earlier = demo_bundle["earlier"]
    assert sorted(os.listdir(earlier)) == sorted(os.listdir(demo_bundle["bundle"]))
    assert "an earlier bundle" not in (earlier / "README.md").read_text()
    assert [p for p in os.listdir(earlier.parent) if p.startswith(".")] == []   # no staging folder left


def test_the_model_flag_and_folder_inputs(demo_bundle, tmp_path):
    """--model names another ONNX file of the bundle (model.int8.onnx's way); a folder is read recursively, in
    sorted order, hidden files and non-image names left out; the default --out is predictions.csv here."""
    bundle = tmp_path / "bundle"
    shutil.copytree(demo_bundle["bundle"], bundle)
    shutil.copy(bundle / "model.onnx", bundle / "other.onnx")
    os.remove(bundle / "model.onnx")
    good, bad = make_inputs(str(tmp_path / "in"))
    for path in bad:
        os.remove(path)
    (tmp_path / "in" / ".hidden.jpg").write_bytes(open(good[0], "rb").read())
    proc = run_bundle(demo_bundle, tmp_path / "in", "--model", "other.onnx", cwd=tmp_path, bundle=bundle)
    assert proc.returncode == 0, proc.stderr
    header, rows = read_predictions(tmp_path / "predictions.csv")
    assert [r["file"] for r in rows] == [os.path.join(str(tmp_path / "in"), "a.jpg"),
                                         os.path.join(str(tmp_path / "in"), "b.JPEG")] + good[2:]
    assert header[-1] == "top5_prob" and all(r["true"] == r["true_prob"] == "" for r in rows)


def test_an_unreadable_image_among_good_ones_is_skipped_with_a_warning(demo_bundle, tmp_path):
    good, bad = make_inputs(str(tmp_path / "in"))
    proc = run_bundle(demo_bundle, tmp_path / "in", "--out", tmp_path / "p.csv", "--top_k", "3")
    assert proc.returncode == 0, proc.stderr
    for path in bad:
        assert f"warning: skipping {path}" in proc.stderr
    _, rows = read_predictions(tmp_path / "p.csv")
    assert sorted(r["file"] for r in rows) == sorted(good) and list(rows[0])[-1] == "top3_prob"


def _bad_inputs(demo_bundle, tmp):
    """(what, args, bundle folder or None for the demo's, exit code, needles) of each bad input of predict.py."""
    image = os.path.join(DEMO, "images", sorted(os.listdir(os.path.join(DEMO, "images")))[0])
    (tmp / "corrupt.jpg").write_bytes(open(image, "rb").read()[:200])
    (tmp / "empty").mkdir()
    (tmp / "empty" / "notes.txt").write_text("no image")
    (tmp / "a_file").write_text("x")
    no_meta = tmp / "no_meta"
    shutil.copytree(demo_bundle["bundle"], no_meta)
    os.remove(no_meta / "model.classes.json")
    broken = tmp / "broken"
    shutil.copytree(demo_bundle["bundle"], broken)
    (broken / "model.onnx").write_bytes(b"not an onnx file")
    return [("missing path", [tmp / "nope.jpg"], None, 1, ["input not found", "nope.jpg"]),
            ("corrupt image", [tmp / "corrupt.jpg"], None, 1, ["corrupt.jpg", "corrupt or truncated", "none left"]),
            ("no images in the folder", [tmp / "empty"], None, 1, ["no image files", "empty"]),
            ("--out a folder", [image, "--out", tmp], None, 2, ["'out'", "is a folder"]),
            ("--out under a file", [image, "--out", tmp / "a_file" / "p.csv"], None, 2, ["'out'", "under a file"]),
            ("--top_k 0", [image, "--top_k", "0"], None, 2, ["'top_k' must be > 0, got 0"]),
            ("--top_k text", [image, "--top_k", "five"], None, 2, ["--top_k", "invalid int value"]),
            ("an unknown flag", [image, "--topk5"], None, 2, ["unrecognized arguments"]),
            ("no input", [], None, 2, ["IMAGE_OR_FOLDER"]),
            ("missing model", [image, "--model", "nope.onnx"], None, 1, ["ONNX model not found: nope.onnx"]),
            ("broken model", [image], broken, 1, ["cannot load ONNX", "model.onnx"]),
            ("missing metadata", [image], no_meta, 1, ["metadata not found", "model.classes.json"])]


def test_each_bad_input_is_one_line_and_writes_nothing(demo_bundle, tmp_path):
    cases = _bad_inputs(demo_bundle, tmp_path)
    before = sorted(os.listdir(tmp_path))
    for what, args, bundle, code, needles in cases:
        proc = run_bundle(demo_bundle, *args, bundle=bundle, cwd=tmp_path)
        assert_one_line_error(proc, *needles, code=code)
        assert proc.stderr.startswith("error: "), (what, proc.stderr)
    assert sorted(os.listdir(tmp_path)) == before   # no predictions.csv, no temporary file


@pytest.mark.parametrize("signame, code, line", [("SIGINT", 130, "interrupted before finishing: nothing was written"),
                                                 ("SIGTERM", 143, "stopped by SIGTERM before finishing: nothing was "
                                                                  "written")])
def test_a_stop_signal_mid_prediction_is_one_line(demo_bundle, tmp_path, signame, code, line):
    proc = run_bundle(demo_bundle, DEMO, "--out", tmp_path / "p.csv", stop_with=signame)
    assert proc.returncode == code and proc.stderr.strip() == line, (proc.returncode, proc.stderr)
    assert os.listdir(tmp_path) == []


def test_export_refuses_an_out_that_is_not_a_bundle_folder(tmp_path):
    """A file, a folder holding other files, a name like a model file: one line, exit 2, nothing touched (the
    refusal comes before the checkpoint is read)."""
    (tmp_path / "a_file").write_text("mine")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "model.classes.json").write_text("{}")
    (mine / "notes.txt").write_text("my notes")
    ckpt = tmp_path / "none.ckpt"
    for out, needle in ((tmp_path / "a_file", "is a file"), (mine, "holds files other than an earlier bundle's "
                                                                   "(notes.txt)"),
                        (tmp_path / "model.onnx", "looks like a file name")):
        proc = run_main("export.py", "--config", CONFIG, "--ckpt_path", ckpt, "--out", out)
        assert_one_line_error(proc, "'out'", needle, code=2)
    assert sorted(os.listdir(tmp_path)) == ["a_file", "mine"] and sorted(os.listdir(mine)) == ["model.classes.json",
                                                                                                "notes.txt"]
    assert (mine / "notes.txt").read_text() == "my notes"
