"""predict.py --explain: on images whose object sits in one known quadrant, the Grad-CAM heatmap of a model
trained to name the object's colour peaks inside that quadrant; the pictures are written, the refusals come
before any write.

The images without an object form a class of their own ("none"): without it one colour would be the answer
when no other colour is seen, and the evidence for it would be the absence of the others, everywhere."""
import os

from conftest import assert_one_line_error, run_main
from tools.report.explanations import HEATMAPS_FILE, picture_name

import numpy as np
import pytest
from PIL import Image

SIZE, SIDE = 128, 40             # canvas and object; ResNet-18's last feature map is 4 x 4: 2 x 2 per quadrant
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "none": None}


def planted(root, split, per_class, rng):
    """``root/<split>/<colour>/<n>.png``: a square of the class's colour in a random quadrant of grey noise;
    returns ``{path: (top, left)}`` of each square's quadrant (class "none": grey noise alone)."""
    quadrants = {}
    for name, colour in COLOURS.items():
        folder = os.path.join(root, split, name)
        os.makedirs(folder)
        for n in range(per_class):
            canvas = rng.integers(120, 136, size=(SIZE, SIZE, 3)).astype(np.uint8)
            qy, qx = rng.integers(0, 2, size=2) * (SIZE // 2)
            y, x = qy + rng.integers(0, SIZE // 2 - SIDE + 1), qx + rng.integers(0, SIZE // 2 - SIDE + 1)
            path = os.path.join(folder, f"{n}.png")
            if colour:
                canvas[y:y + SIDE, x:x + SIDE] = colour
                quadrants[path] = (qy, qx)
            Image.fromarray(canvas).save(path)
    return quadrants


@pytest.fixture(scope="module")
def explained(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted")
    rng = np.random.default_rng(7)
    data = str(root / "data")
    planted(data, "train", 12, rng)
    truth = planted(data, "val", 10, rng)
    run = str(root / "run")
    train = ["--data_dir", data, "--model", "resnet18", "--image_resize", str(SIZE), "--crop_pct",
             "1.0", "--batch_size", "12", "--epoch_size", "5", "--warmup_epochs", "0", "--lr", "0.003", "--opt",
             "adamw", "--num_parallel_workers", "1", "--color_jitter", "0", "--hflip", "0", "--scale", "1", "1",
             "--dataset", "", "--check_cache_dir", "off"]
    proc = run_main("finetune.py", *train, "--ckpt_save_dir", run)
    assert proc.returncode == 0, proc.stderr
    out = str(root / "explain")
    ckpt = os.path.join(run, "resnet18_best.ckpt")
    proc = run_main("predict.py", "--config", os.path.join(run, "config.yaml"), "--ckpt_path", ckpt,
                    "--split", "val", "--out_dir", out, "--explain", "True")
    assert proc.returncode == 0, proc.stderr
    return {"out": out, "truth": truth, "stdout": proc.stdout, "run": run, "ckpt": ckpt}


def test_the_heatmap_peaks_in_the_quadrant_of_the_object(explained):
    folder = os.path.join(explained["out"], "explain_resnet18_best_val")
    saved = np.load(os.path.join(folder, HEATMAPS_FILE))
    files, heatmaps = list(saved["files"]), saved["heatmaps"]
    assert len(files) == 10 * len(COLOURS) and heatmaps.shape == (len(files), SIZE, SIZE)
    inside = []
    for path, heatmap in zip(files, heatmaps):
        if path not in explained["truth"]:                                  # nothing to find
            continue
        y, x = np.unravel_index(np.argmax(heatmap), heatmap.shape)
        qy, qx = explained["truth"][path]
        inside.append(qy <= y < qy + SIZE // 2 and qx <= x < qx + SIZE // 2)
    print(f"peak inside the object's quadrant: {sum(inside)} of {len(inside)}")
    assert len(inside) == 30 and np.mean(inside) >= 0.7
    for index, path in enumerate(files):                                   # one picture per image, the view's size
        with Image.open(os.path.join(folder, picture_name(index, path))) as picture:
            assert picture.size == (SIZE, SIZE) and picture.mode == "RGB"
    assert f"{len(files)} pictures and {HEATMAPS_FILE} written to {folder}" in explained["stdout"]


def test_explain_refuses_an_exported_model_before_any_write(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"x")
    proc = run_main("predict.py", "--onnx", tmp_path / "m.onnx", "--explain", "True", "--out_dir", tmp_path / "o")
    assert_one_line_error(proc, "--explain needs the checkpoint's network", "not --onnx", code=2)
    assert not (tmp_path / "o").exists()


def test_explain_refuses_a_model_it_cannot_explain_before_any_write(explained, tmp_path, monkeypatch):
    from tools.models import families

    monkeypatch.setattr(families, "FAMILIES", ())                      # as a model of a family the suite lacks
    proc = run_main("predict.py", "--config", os.path.join(explained["run"], "config.yaml"), "--ckpt_path",
                    explained["ckpt"], "--split", "val", "--out_dir", tmp_path / "o", "--explain", "True")
    assert_one_line_error(proc, "--explain needs a model of a family the suite knows", code=2)
    assert not (tmp_path / "o").exists()
