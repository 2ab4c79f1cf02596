"""The bad-input corpus: each bad input is one line on stderr with exit 2 (usage) or 1 (runtime),
or, for unreadable images, a skip with a warning naming each file and their count; never a traceback.

(A checkpoint of another architecture is tested in tests/unit/train/test_techniques.py.)
"""
import io
import json
import os
import shutil
import struct
import zlib

from conftest import (
    DEMO,
    TINY_CLASSES,
    TINY_TRAIN_ARGS,
    assert_one_line_error,
    make_tiny_aircraft,
    run_main,
    run_script,
)
from tools.core.config import parse_config
from tools.core.errors import DataError, UsageError
from tools.datasets.image_check import check_image, to_rgb_jpeg_bytes
from tools.datasets.loader import open_split

import mindspore.dataset.vision as vision
import numpy as np
import pytest
import yaml
from PIL import Image

FAST_TRAIN_ARGS = [*TINY_TRAIN_ARGS, "--epoch_size", "1", "--mode", "1", "--model", "resnet18"]
DEMO_IMAGE = os.path.join(DEMO, "images", "0000095.jpg")
CONVERTED = ("gif", "webp")  # formats MindSpore's decoder refuses: served re-encoded


def encoded(image, image_format, **options):
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def pattern(height, width):
    """Blocks of random colour: small as JPEG, decoded alike by Pillow and MindSpore."""
    blocks = np.random.default_rng(0).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return Image.fromarray(np.kron(blocks, np.ones((height // 4, width // 4, 1), dtype=np.uint8)))


def bad_files():
    """name -> content of files no decoder can use."""
    corrupt = bytearray(open(DEMO_IMAGE, "rb").read())
    corrupt[20:200] = np.random.default_rng(0).bytes(180)  # garbled header: MindSpore's decoder segfaults
    photo = encoded(Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)), "JPEG")
    return {"corrupt": bytes(corrupt), "truncated": photo[: len(photo) // 2], "empty": b"",
            "text": b"not an image\n"}


def readable_files():
    """name -> content of unusual files that are trained on (all named .jpg, as the layout wants)."""
    rgb = pattern(48, 64)
    grey16 = np.asarray(rgb.convert("L"), dtype=np.uint16) * 257
    return {"grey": encoded(rgb.convert("L"), "JPEG"), "cmyk": encoded(rgb.convert("CMYK"), "JPEG"),
            "png16": encoded(Image.fromarray(grey16), "PNG"), "rgba": encoded(rgb.convert("RGBA"), "PNG"),
            "palette": encoded(rgb.quantize(16), "PNG"), "large": encoded(pattern(4000, 6000), "JPEG"),
            "gif": encoded(rgb.quantize(16), "GIF"), "webp": encoded(rgb, "WEBP")}


def add_images(data, split, files, start):
    """Write ``files`` as images of ``data`` and list them in ``split``; returns name -> path."""
    paths, lines = {}, []
    for n, (name, content) in enumerate(files.items(), start):
        image_id = f"99{n:05d}"
        paths[name] = os.path.join(data, "images", image_id + ".jpg")
        with open(paths[name], "wb") as f:
            f.write(content)
        lines.append(f"{image_id} {TINY_CLASSES[n % len(TINY_CLASSES)]}\n")
    with open(os.path.join(data, f"images_variant_{split}.txt"), "a", encoding="utf-8") as f:
        f.writelines(lines)
    return paths


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Tiny Aircraft-layout data (20 trainval, 10 test) + the corpus in trainval + one bad test image."""
    data = make_tiny_aircraft(str(tmp_path_factory.mktemp("corpus") / "data"), per_class={"trainval": 4, "test": 2})
    bad = add_images(data, "trainval", bad_files(), 0)
    readable = add_images(data, "trainval", readable_files(), len(bad))
    bad_test = add_images(data, "test", {"truncated": bad_files()["truncated"]}, 100)["truncated"]
    return {"data": data, "bad": bad, "readable": readable, "bad_test": bad_test}


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    """One tiny training run over the whole corpus, from an empty working folder."""
    cwd = tmp_path_factory.mktemp("cwd")
    out = str(tmp_path_factory.mktemp("run"))
    proc = run_script("finetune.py", "--data_dir", corpus["data"], *FAST_TRAIN_ARGS, "--ckpt_save_dir", out, cwd=cwd)
    return {"proc": proc, "out": out, "cwd": cwd}


def test_check_image_sorts_the_corpus(corpus):
    reasons = {"corrupt": "not an image", "truncated": "truncated", "empty": "empty file", "text": "not an image"}
    for name, path in corpus["bad"].items():
        ok, reason, _ = check_image(path)
        assert not ok and reasons[name] in reason, (name, reason)
    for name, path in corpus["readable"].items():
        assert check_image(path) == (True, "", name in CONVERTED), name


def png_header(width, height):
    """A PNG whose header claims ``width`` x ``height`` (no pixel data needed to be refused)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + \
        chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [20_000, 30_000])  # 400 MP (over our limit), 900 MP (over Pillow's)
def test_huge_images_are_refused_by_size(tmp_path, side):
    path = tmp_path / "huge.png"
    path.write_bytes(png_header(side, side))
    assert check_image(str(path)) == (False, "larger than 300 megapixels", False)


def test_16bit_images_are_converted_to_their_top_8_bits(tmp_path):
    grey16 = np.arange(0, 65536, 16, dtype=np.uint16).reshape(64, 64)
    Image.fromarray(grey16).save(tmp_path / "grey16.tif")
    assert check_image(str(tmp_path / "grey16.tif")) == (True, "", True)
    decoded = vision.Decode()(to_rgb_jpeg_bytes(str(tmp_path / "grey16.tif")))
    assert decoded.shape == (64, 64, 3)
    assert np.abs(decoded[..., 0].astype(int) - (grey16 >> 8)).mean() < 2


def pillow_rgb(path):
    """What the pipeline should see: Pillow's 8-bit RGB (16-bit grey: its top 8 bits)."""
    with Image.open(path) as image:
        if image.mode.startswith("I;16"):
            return np.repeat((np.asarray(image) >> 8).astype(np.uint8)[..., None], 3, axis=2)
        return np.asarray(image.convert("RGB"))


def test_pipeline_decodes_unusual_images_as_8bit_rgb(corpus, capsys):
    cfg = parse_config(["--data_dir", corpus["data"], "--train_split", "trainval"], "t")
    data = open_split(cfg, "trainval")
    assert capsys.readouterr().err.count("warning: skipping") == len(corpus["bad"])
    images = {path: image
              for path, (image, _) in zip(data.paths, data.dataset.create_tuple_iterator(output_numpy=True))}
    for name, path in corpus["readable"].items():
        decoded, expected = vision.Decode()(images[path]), pillow_rgb(path)
        assert decoded.dtype == np.uint8 and decoded.shape == expected.shape, name
        assert np.abs(decoded.astype(int) - expected).mean() < (2 if name in CONVERTED else 0.5), name


def test_training_skips_unreadable_images_and_trains_on_the_rest(corpus, trained):
    proc = trained["proc"]
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    for path in corpus["bad"].values():
        assert f"warning: skipping {path}: " in proc.stderr
    assert f"warning: skipping {corpus['bad_test']}: " in proc.stderr
    assert "warning: skipped 4 unreadable images of split 'trainval'; using 28 of 32" in proc.stderr
    assert "warning: skipped 1 unreadable images of split 'test'; using 10 of 11" in proc.stderr
    assert not any(path in proc.stderr for path in corpus["readable"].values())
    assert "28 train images" in proc.stdout and "10 val images" in proc.stdout
    assert os.listdir(trained["cwd"]) == []  # MindSpore dumps files it cannot decode into the working folder


def test_validation_reports_skipped_images(corpus, trained):
    out = trained["out"]
    proc = run_script("validate.py", "--config", os.path.join(out, "config.yaml"),
                      "--ckpt_path", os.path.join(out, "resnet18_best.ckpt"))
    assert proc.returncode == 0, proc.stderr
    assert f"warning: skipping {corpus['bad_test']}: " in proc.stderr
    assert "skipped 1 unreadable images of split 'test'; using 10 of 11" in proc.stderr
    assert "(10 images, " in proc.stdout  # validate.py counts the images it evaluated


@pytest.mark.parametrize("flags, needle", [
    (["--skip_bad_images", "False"], "4 of 32 images of split 'trainval' are unreadable; skip_bad_images"),
    (["--max_bad_images", "3"], "more than max_bad_images: 3"),
])
def test_too_many_bad_images_is_one_line(corpus, tmp_path, flags, needle):
    proc = run_main("finetune.py", "--data_dir", corpus["data"], *FAST_TRAIN_ARGS, *flags, "--ckpt_save_dir", tmp_path)
    assert_one_line_error(proc, corpus["bad"]["corrupt"], "not an image", needle, code=1)


def make_tree(root, splits=("trainval", "test"), classes=("a_class", "b_class"), per_class=2):
    """A split tree without classes.txt: demo images copied into ``<split>/<class>/``."""
    images = sorted(os.listdir(os.path.join(DEMO, "images")))
    for split in splits:
        for c, name in enumerate(classes):
            os.makedirs(os.path.join(root, split, name))
            for i in range(per_class):
                shutil.copy(os.path.join(DEMO, "images", images[c * per_class + i]), os.path.join(root, split, name))
    return str(root)


def test_folder_layout_skips_bad_images_and_keeps_empty_classes(tmp_path):
    data = make_tree(tmp_path / "data", per_class=4)
    for split in ("trainval", "test"):
        os.makedirs(tmp_path / "data" / split / "c_empty")
    bad = {name: str(tmp_path / "data" / "trainval" / "a_class" / f"{name}.jpg") for name in ("empty", "text")}
    for name, content in bad_files().items():
        if name in bad:
            open(bad[name], "wb").write(content)
    gif = tmp_path / "data" / "trainval" / "b_class" / "x.gif"
    gif.write_bytes(readable_files()["gif"])
    (tmp_path / "data" / "trainval" / "b_class" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    proc = run_script("finetune.py", "--data_dir", data, *FAST_TRAIN_ARGS, "--ckpt_save_dir", tmp_path / "out",
                      "--batch_size", "4", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    for path in bad.values():
        assert f"warning: skipping {path}: " in proc.stderr
    assert "skipped 2 unreadable images of split 'trainval'" in proc.stderr and ".DS_Store" not in proc.stderr
    assert "3 classes, 9 train images (folder), 8 val images" in proc.stdout
    assert sorted(os.listdir(tmp_path)) == ["data", "out"]


@pytest.mark.parametrize("archive, kind", [("data.zip", "zip"), ("data.tar", "tar"), ("data.tar.gz", "tar.gz"),
                                           ("data.tgz", "tar.gz"), ("notes.txt", None)])
def test_an_archive_or_a_file_as_data_dir_is_named_as_what_it_is(tmp_path, archive, kind):
    data = make_tree(tmp_path / "data")
    path = str(tmp_path / archive)
    if kind is None:
        open(path, "w").write("not a folder\n")
    else:  # the archive of the data folder, under a name that may not tell (.tgz)
        os.replace(shutil.make_archive(str(tmp_path / "made"), {"tar.gz": "gztar"}.get(kind, kind), data), path)
    proc = run_main("finetune.py", "--data_dir", path, *FAST_TRAIN_ARGS, "--ckpt_save_dir", tmp_path / "run")
    needle = f"is a {kind} archive: extract it first" if kind else "is a file, not a folder of images"
    assert_one_line_error(proc, f"data_dir {path} {needle}", code=1)


def test_split_folder_without_images_is_one_line(tmp_path):
    data = make_tree(tmp_path / "data", splits=("trainval",))
    for name in ("a_class", "b_class"):
        os.makedirs(tmp_path / "data" / "test" / name)
    proc = run_main("finetune.py", "--data_dir", data, *FAST_TRAIN_ARGS, "--ckpt_save_dir", tmp_path / "out")
    assert_one_line_error(proc, "split 'test'", "holds no images", code=1)


def annotation_with_unknown_val_class(tmp_path):
    data = make_tiny_aircraft(str(tmp_path / "data"), per_class={"trainval": 1, "test": 1})
    annotation = os.path.join(data, "images_variant_test.txt")
    lines = open(annotation, encoding="utf-8").readlines()
    lines[0] = lines[0].split()[0] + " Zeppelin\n"
    open(annotation, "w", encoding="utf-8").writelines(lines)
    return data, ("images_variant_test.txt", "label 'Zeppelin' is not one of the class names")


def tree_with_unknown_val_class(tmp_path):
    data = make_tree(tmp_path / "data")
    make_tree(tmp_path / "extra", splits=("test",), classes=("z_class",))
    shutil.move(str(tmp_path / "extra" / "test" / "z_class"), os.path.join(data, "test"))
    return data, ("class 'z_class' of split 'test'", "not a class of the training split")


@pytest.mark.parametrize("make", [annotation_with_unknown_val_class, tree_with_unknown_val_class])
def test_val_class_not_in_train_is_one_line(tmp_path, make):
    data, needles = make(tmp_path)
    proc = run_main("finetune.py", "--data_dir", data, *FAST_TRAIN_ARGS, "--ckpt_save_dir", tmp_path / "out")
    assert_one_line_error(proc, *needles, code=1)


def test_num_classes_smaller_than_found_is_one_line(tiny_aircraft, tmp_path):
    proc = run_main("finetune.py", "--data_dir", tiny_aircraft, *FAST_TRAIN_ARGS, "--num_classes", "3",
                    "--ckpt_save_dir", tmp_path)
    assert_one_line_error(proc, "num_classes is 3", "5 classes", code=2)


@pytest.mark.parametrize("yaml_values, flags, code, needles", [
    ({"learning_rate": 0.01}, [], 2, ["unknown key 'learning_rate'"]),
    ({"label_smoothing": "high"}, [], 2, ["bad.yaml:1: bad value 'high' for 'label_smoothing'"]),
    ({}, ["--lr=-0.1"], 2, ["'lr' must be >= 0"]),
    ({}, ["--batch_size", "0"], 2, ["'batch_size' must be > 0"]),
    ({}, ["--train_split", "nope"], 1, ["split 'nope' not found", "trainval"]),
])
def test_bad_config_is_one_line(tiny_aircraft, tmp_path, yaml_values, flags, code, needles):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(yaml_values))
    proc = run_main("finetune.py", "--data_dir", tiny_aircraft, *FAST_TRAIN_ARGS, "--config", config, *flags,
                    "--ckpt_save_dir", tmp_path / "out")
    assert_one_line_error(proc, *needles, code=code)


@pytest.mark.parametrize("flags, needle", [(["--max_bad_images=-1"], "'max_bad_images' must be >= 0"),
                                           (["--skip_bad_images", "maybe"], "expected a boolean")])
def test_bad_image_keys_are_checked(flags, needle):
    with pytest.raises(UsageError, match=needle):
        parse_config(flags, "t")


# ---- images that change after the check ----------------------------------------------------------

def rot(path, content=None):
    """Overwrite ``path`` with garbage of its own length (or ``content``), keeping its mtime: the check
    cache's size and mtime still match."""
    stat = os.stat(path)
    with open(path, "r+b") as f:
        f.write(content if content is not None else np.random.default_rng(7).bytes(stat.st_size))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_bit_rot_after_the_check_is_skipped_in_training_validation_and_prediction(tmp_path):
    data = make_tiny_aircraft(str(tmp_path / "data"), per_class={"trainval": 4, "test": 2})
    cache = ["--check_cache_dir", tmp_path / "cache"]
    first = run_main("finetune.py", "--data_dir", data, *FAST_TRAIN_ARGS, *cache, "--ckpt_save_dir", tmp_path / "a")
    assert first.returncode == 0, first.stderr
    first_ids = {split: open(os.path.join(data, f"images_variant_{split}.txt")).readline().split()[0]
                 for split in ("trainval", "test")}
    rotten = {split: os.path.join(data, "images", image_id + ".jpg") for split, image_id in first_ids.items()}
    rot(rotten["trainval"])
    header = bytearray(open(rotten["test"], "rb").read())
    header[20:200] = np.random.default_rng(0).bytes(180)  # a garbled JPEG header: MindSpore's decoder fails on it
    rot(rotten["test"], bytes(header))
    trained = run_main("finetune.py", "--data_dir", data, *FAST_TRAIN_ARGS, *cache, "--ckpt_save_dir", tmp_path / "b")
    assert trained.returncode == 0, trained.stderr
    assert f"warning: skipping {rotten['trainval']}: not an image" in trained.stderr
    assert f"warning: skipping {rotten['test']}: " in trained.stderr
    assert "19 train images" in trained.stdout and "9 val images" in trained.stdout
    model = ["--config", tmp_path / "a" / "config.yaml", "--ckpt_path", tmp_path / "a" / "resnet18_last.ckpt", *cache]
    validated = run_main("validate.py", *model, "--report_dir", tmp_path / "report")
    predicted = run_main("predict.py", *model, "--split", "test", "--out_dir", tmp_path / "predictions")
    for proc in (trained, validated, predicted):
        assert "Traceback" not in proc.stderr + proc.stdout and "C++" not in proc.stderr, proc.stderr
    for proc in (validated, predicted):
        assert proc.returncode == 0, proc.stderr
        assert f"warning: skipping {rotten['test']}: " in proc.stderr
        assert "skipped 1 unreadable images of split 'test'; using 9 of 10" in proc.stderr
    assert "(9 images, " in validated.stdout and "9 images predicted" in predicted.stdout
    limited = run_main("validate.py", *model, "--report_dir", tmp_path / "report", "--max_bad_images", "0")
    assert_one_line_error(limited, rotten["test"], "more than max_bad_images: 0", code=1)


def open_tree(tmp_path, cache, training, *flags):
    from tools.datasets.loader import build_loader
    data = make_tree(tmp_path / "data", per_class=4)
    cfg = parse_config(["--data_dir", data, *FAST_TRAIN_ARGS, "--batch_size", "4", "--check_cache_dir", cache,
                        "--shuffle", "False", *flags], "test")
    split = open_split(cfg, "trainval", training=training)
    return split, build_loader(cfg, split, 2, training=training)


def cached_paths(cache):
    return {key for name in os.listdir(cache) for key in json.load(open(os.path.join(cache, name)))["files"]}


def test_an_image_gone_bad_while_training_is_replaced_counted_and_forgotten(tmp_path, capsys):
    cache = str(tmp_path / "cache")
    split, loader = open_tree(tmp_path, cache, True)
    bad = split.paths[1]
    assert bad in cached_paths(cache)
    rot(bad)
    sizes = [len(images) for images, _ in loader.create_tuple_iterator(num_epochs=1, output_numpy=True)]
    assert sizes == [4, 4]  # the next image took its place: batches and steps keep their size
    err = capsys.readouterr().err
    assert err.count(f"warning: skipping {bad}: not an image") == 1 and "Traceback" not in err
    assert split.skipped == [(bad, "not an image")] and bad not in cached_paths(cache)
    rot(split.paths[2])  # a second one: more than max_bad_images 1
    split.source.max_bad = 1
    with pytest.raises(DataError, match=f"{split.paths[2]}: not an image .2 of 8 images of split 'trainval' are "
                                        "unreadable, more than max_bad_images: 1"):
        list(loader.create_tuple_iterator(num_epochs=1, output_numpy=True))


def test_an_image_gone_bad_while_evaluating_is_a_one_line_error(tmp_path, capsys):
    cache = str(tmp_path / "cache")
    split, loader = open_tree(tmp_path, cache, False)
    bad = split.paths[5]
    os.remove(bad)
    with pytest.raises(DataError, match=f"{bad}: cannot be read .* changed after split 'trainval' was checked; "
                                        "run again to skip it"):
        list(loader.create_tuple_iterator(num_epochs=1, output_numpy=True))
    assert bad not in cached_paths(cache) and "Traceback" not in capsys.readouterr().err


def test_a_decode_failure_in_the_pipeline_is_one_line(tmp_path):
    from tools.datasets.image_files import checked_iterator

    split, loader = open_tree(tmp_path, "off", False)
    rot(split.paths[3])
    source = split.source
    source.crcs[3] = zlib.crc32(open(split.paths[3], "rb").read())  # as if the check had passed these bytes
    with pytest.raises(DataError, match="MindSpore cannot decode an image of split 'trainval' that the image check "
                                        r"passed \(.*Decode: image decode failed\.\)"):
        list(loader.create_tuple_iterator(num_epochs=1, output_numpy=True))
    plain = checked_iterator(lambda: iter([1, 2]), source)
    assert list(plain()) == [1, 2]
