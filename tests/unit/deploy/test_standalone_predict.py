"""tools/deploy/standalone_predict.py (the bundle's predict.py): its numpy + Pillow preprocessing equals
MindSpore's, step by step and as a whole, bit for bit; it imports nothing of MindSpore or the suite."""
import ast
import io
import json
import math
import os
import sys

from conftest import DEMO
from tools.datasets.image_check import to_rgb_jpeg_bytes
from tools.deploy import standalone_predict as standalone

import mindspore.dataset.vision as vision
import numpy as np
import pytest
from mindcv.data import create_transforms
from mindspore.dataset.vision import Inter
from PIL import Image

INTERPOLATIONS = {"bilinear": (Inter.BILINEAR, standalone.resize_bilinear),
                  "linear": (Inter.LINEAR, standalone.resize_bilinear),
                  "nearest": (Inter.NEAREST, standalone.resize_nearest)}


def _sizes(rng, count):
    """Random (source, target) sizes: up- and down-scaling, 1-pixel sides, exact halving, same size."""
    cases = [((28, 28), (96, 96)), ((1, 7), (5, 3)), ((64, 48), (32, 24)), ((50, 50), (50, 50)), ((9, 400), (3, 137))]
    for _ in range(count):
        cases.append((tuple(int(v) for v in rng.integers(1, 700, 2)), tuple(int(v) for v in rng.integers(1, 300, 2))))
    return cases


@pytest.mark.parametrize("name", sorted(INTERPOLATIONS))
def test_resize_equals_mindspore_resize_bit_for_bit(name):
    """OpenCV's fixed-point bilinear (11-bit weights, its two roundings, the 2x2 mean of an exact halving) and
    nearest, re-written in numpy: every pixel equals MindSpore's vision.Resize on noise and on a smooth ramp."""
    inter, resize = INTERPOLATIONS[name]
    rng = np.random.default_rng(0)
    for (src_h, src_w), (height, width) in _sizes(rng, 60):
        noise = rng.integers(0, 256, (src_h, src_w, 3), dtype=np.uint8)
        ramp = np.broadcast_to(np.linspace(0, 255, src_w).astype(np.uint8)[None, :, None], (src_h, src_w, 3))
        for image in (noise, np.ascontiguousarray(ramp)):
            expected = vision.Resize((height, width), inter)(image)
            np.testing.assert_array_equal(resize(image, height, width), expected, err_msg=f"{image.shape}->{height}")


def test_shorter_side_size_equals_mindspore_resize_of_an_int():
    rng = np.random.default_rng(1)
    for _ in range(40):
        height, width = (int(v) for v in rng.integers(1, 900, 2))
        size = int(rng.integers(8, 400))
        expected = vision.Resize(size, Inter.BILINEAR)(np.zeros((height, width, 3), np.uint8)).shape[:2]
        assert standalone.resized_size(height, width, size) == expected, (height, width, size)


@pytest.mark.parametrize("size", [1, 4, 5, 8, 11, 14, 16, 19])
def test_center_crop_equals_mindspore_center_crop_and_its_padding(size):
    image = np.arange(11 * 14 * 3, dtype=np.uint8).reshape(11, 14, 3)
    np.testing.assert_array_equal(standalone.center_crop(image, size), vision.CenterCrop(size)(image))


def _write(image, path, **kwargs):
    image.save(path, **kwargs)
    return str(path)


def _image_files(folder):
    """Files of every kind the suite reads: JPEG (4:2:0, 4:4:4, progressive, grey, CMYK), PNG (RGB, RGBA, L, P,
    1-bit, 16-bit grey), BMP, and GIF / WebP / TIFF (re-encoded by the suite), odd sizes."""
    rng = np.random.default_rng(2)
    files = []
    for i, (height, width) in enumerate([(37, 53), (301, 97), (5, 640), (224, 224)]):
        small = rng.integers(0, 256, (max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((width, height), Image.BICUBIC)
        files += [_write(image, folder / f"{i}.jpg", quality=75), _write(image, folder / f"{i}s.jpg", subsampling=0),
                  _write(image, folder / f"{i}p.jpg", progressive=True),
                  _write(image.convert("L"), folder / f"{i}l.jpg"), _write(image.convert("CMYK"), folder / f"{i}c.jpg"),
                  _write(image, folder / f"{i}.png"), _write(image.convert("RGBA"), folder / f"{i}a.png"),
                  _write(image.convert("L"), folder / f"{i}l.png"), _write(image.convert("P"), folder / f"{i}p.png"),
                  _write(image.convert("1"), folder / f"{i}b.png"), _write(image, folder / f"{i}.bmp"),
                  _write(image, folder / f"{i}.gif"), _write(image, folder / f"{i}.webp"),
                  _write(image, folder / f"{i}.tiff")]
        noise = rng.integers(0, 256, (height, width), dtype=np.uint16)
        grey16 = np.asarray(image.convert("L"), np.uint16) * 257 + noise
        files.append(_write(Image.fromarray(grey16), folder / f"{i}16.png"))
    return files


def _demo_files(count):
    return [os.path.join(DEMO, "images", name) for name in sorted(os.listdir(os.path.join(DEMO, "images")))[:count]]


def _suite_bytes(path):
    """What the suite feeds MindSpore's Decode for ``path``: the file, or its RGB JPEG for other formats."""
    with Image.open(path) as image:
        as_is = image.format in standalone.DECODED_AS_IS
    return np.fromfile(path, np.uint8) if as_is else to_rgb_jpeg_bytes(path)


def test_decode_equals_mindspore_decode(tmp_path):
    files = _image_files(tmp_path) + _demo_files(50)
    for path in files:
        np.testing.assert_array_equal(standalone.decode_rgb(path), vision.Decode()(_suite_bytes(path)), err_msg=path)


@pytest.mark.parametrize("image_resize, crop_pct, interpolation", [(96, 1.0, "bilinear"), (224, 0.875, "bilinear"),
                                                                   (64, 1.2, "nearest"), (32, 0.9, "linear")])
def test_whole_preprocessing_equals_mindcv_eval_transforms(image_resize, crop_pct, interpolation, tmp_path):
    """The model input from the metadata's settings = MindCV's create_transforms(is_training=False) in MindSpore,
    bit for bit (the demo's 28 px images and the files of every kind; crop_pct > 1 pads)."""
    mean, std = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
    transforms = create_transforms(dataset_name="", image_resize=image_resize, is_training=False, crop_pct=crop_pct,
                                   interpolation=interpolation, mean=mean, std=std)
    meta = {"resize": int(math.floor(image_resize / crop_pct)), "crop": image_resize, "interpolation": interpolation,
            "mean": mean, "std": std}
    files = _image_files(tmp_path)[::3] + _demo_files(20)
    for path in files:
        expected = _suite_bytes(path)
        for op in transforms:
            expected = op(expected)
        mine = standalone.preprocess(standalone.decode_rgb(path), meta)
        assert mine.shape == (1, 3, image_resize, image_resize) and mine.dtype == np.float32
        np.testing.assert_array_equal(mine[0], expected, err_msg=path)


def test_unreadable_files_are_data_errors_naming_the_reason(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buffer, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buffer.getvalue()[:300])
    reasons = {"empty.jpg": "empty file", "text.jpg": "not an image", "cut.jpg": "corrupt or truncated"}
    for name, reason in reasons.items():
        with pytest.raises(standalone.DataError, match=reason):
            standalone.decode_rgb(str(tmp_path / name))


def test_an_interpolation_it_cannot_reproduce_is_refused(tmp_path):
    meta = {"class_names": ["a"], "input_shape": [1, 3, 8, 8], "temperature": 1.0,
            "preprocessing": {"resize": 8, "crop": 8, "interpolation": "bicubic", "mean": [0] * 3, "std": [1] * 3}}
    (tmp_path / standalone.METADATA).write_text(str(meta).replace("'", '"'))
    with pytest.raises(standalone.DataError, match="interpolation 'bicubic' is not reproduced"):
        standalone.read_metadata(str(tmp_path))


def test_a_multilabel_model_is_refused_not_read_as_one_class(tmp_path):
    meta = {"class_names": ["a", "b"], "input_shape": [1, 3, 8, 8], "temperature": 1.0, "task": "multilabel",
            "preprocessing": {"resize": 8, "crop": 8, "interpolation": "bilinear", "mean": [0] * 3, "std": [1] * 3}}
    (tmp_path / standalone.METADATA).write_text(json.dumps(meta))
    with pytest.raises(standalone.DataError, match="a multilabel model: this script answers one class per image"):
        standalone.read_metadata(str(tmp_path))
    meta["task"] = "single"
    (tmp_path / standalone.METADATA).write_text(json.dumps(meta))
    assert standalone.read_metadata(str(tmp_path))["class_names"] == ["a", "b"]


def test_it_imports_only_the_standard_library_numpy_onnxruntime_and_pillow():
    tree = ast.parse(open(standalone.__file__, encoding="utf-8").read())
    names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    names |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert names - set(sys.stdlib_module_names) == {"numpy", "onnxruntime", "PIL"}, names
