"""Data as users have it: list/CSV files, unsplit folders, odd files and encodings, the check cache, balance."""
import argparse
import csv
import os

from conftest import TINY_TRAIN_ARGS, assert_one_line_error, run_main, run_script
from tools.core.config import option_table, parse_config
from tools.core.errors import DataError, UsageError
from tools.datasets import check_cache, class_balance, splitting
from tools.datasets.inputs import find_images, input_split
from tools.datasets.loader import detect_layout, open_source

import numpy as np
import pytest
from PIL import Image

ODD_LABELS = ["F-16A/B", "Cessna 172, float", "707-320"]  # '/', space and comma


def write_image(path, seed, size=16):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def config(data_dir, **values):
    """A resolved config (defaults of every key) with ``values`` set, as the scripts build it."""
    cfg = {key: spec[0] for key, spec in option_table().items()}
    cfg.update(data_dir=str(data_dir), check_cache_dir="off", **values)
    return argparse.Namespace(**cfg)


def write_csv(path, rows, header=("image", "label"), encoding="utf-8"):
    with open(path, "w", newline="", encoding=encoding) as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def make_listed(root, count=6, labels=ODD_LABELS):
    """``count`` images under ``root/pics`` labelled round-robin; returns ``[(relative path, label), ...]``."""
    rows = []
    for i in range(count):
        rel = f"pics/{i:03d}.jpg"
        write_image(str(root / rel), seed=i)
        rows.append((rel, labels[i % len(labels)]))
    return rows


# ---- list / CSV datasets -------------------------------------------------------------------------

def test_csv_labels_with_commas_spaces_and_slashes(tmp_path):
    rows = make_listed(tmp_path)
    write_csv(tmp_path / "train.csv", rows)
    cfg = config(tmp_path)
    assert detect_layout(cfg, "train") == "list"
    _, source = open_source(cfg, "train")
    assert source.class_names == sorted(ODD_LABELS)
    assert source.paths == [os.path.join(str(tmp_path), rel) for rel, _ in rows]
    assert [source.class_names[i] for i in source.labels] == [label for _, label in rows]


def test_txt_list_label_is_the_rest_of_the_line(tmp_path):
    rows = make_listed(tmp_path)
    (tmp_path / "train.txt").write_text("".join(f"{rel} {label}\n" for rel, label in rows), encoding="utf-8")
    _, source = open_source(config(tmp_path), "train")
    assert [source.class_names[i] for i in source.labels] == [label for _, label in rows]


def test_custom_columns_absolute_paths_and_bom(tmp_path):
    rows = make_listed(tmp_path)
    with open(tmp_path / "train.csv", "w", newline="", encoding="utf-8-sig") as f:  # with a BOM
        writer = csv.writer(f)
        writer.writerow(["id", "file", "class"])
        writer.writerows([(n, str(tmp_path / rel), label) for n, (rel, label) in enumerate(rows)])
    _, source = open_source(config(tmp_path, image_column="file", label_column="class"), "train")
    assert source.paths == [str(tmp_path / rel) for rel, _ in rows]
    with pytest.raises(DataError, match="no column 'image' .*image_column"):
        open_source(config(tmp_path), "train")


def test_integer_labels_are_indices(tmp_path):
    rows = make_listed(tmp_path, labels=["2", "0", "4"])
    write_csv(tmp_path / "train.csv", rows)
    _, source = open_source(config(tmp_path), "train")
    assert source.class_names == ["0", "1", "2", "3", "4"]  # index == label, class 1 and 3 without images
    assert list(source.labels) == [int(label) for _, label in rows]
    names = ["zero", "one", "two", "three", "four"]
    (tmp_path / "classes.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    _, named = open_source(config(tmp_path), "train")
    assert named.class_names == names and list(named.labels) == list(source.labels)


def test_classes_file_fixes_the_order_and_val_follows_train(tmp_path):
    rows = make_listed(tmp_path, count=9)
    write_csv(tmp_path / "train.csv", rows[:6])
    write_csv(tmp_path / "val.csv", rows[6:7])  # one class only
    order = ["707-320", "F-16A/B", "Cessna 172, float"]
    (tmp_path / "classes.txt").write_text("\n".join(order) + "\n", encoding="utf-8")
    _, train = open_source(config(tmp_path), "train")
    _, val = open_source(config(tmp_path), "val", class_names=train.class_names)
    assert train.class_names == val.class_names == order
    assert val.class_names[val.labels[0]] == rows[6][1]


@pytest.mark.parametrize("content, needle", [
    ("image,label\npics/000.jpg,a\npics/missing.jpg,b\n", "train.csv:3: image file not found"),
    ("image,label\npics/000.jpg,a\npics/000.jpg,b\n", "train.csv:3: image pics/000.jpg already listed on line 2"),
    ("image,label\npics/000.jpg\n", "train.csv:2: 1 fields, the header has 2"),
    ("image,label\npics/000.jpg,\n", "train.csv:2: empty label field"),
    ("image,label\n", "list file has no entries"),
    ("", "list file is empty"),
])
def test_bad_csv_names_file_and_line(tmp_path, content, needle):
    make_listed(tmp_path, count=1)
    (tmp_path / "train.csv").write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=needle.replace("(", r"\(")):
        open_source(config(tmp_path), "train")


def test_unknown_label_index_and_both_list_files(tmp_path):
    make_listed(tmp_path, count=1)
    (tmp_path / "classes.txt").write_text("a\nb\n", encoding="utf-8")
    (tmp_path / "train.txt").write_text("pics/000.jpg 7\n", encoding="utf-8")
    with pytest.raises(DataError, match="train.txt:1: label '7' is neither a class name nor an index below 2"):
        open_source(config(tmp_path), "train")
    write_csv(tmp_path / "train.csv", [("pics/000.jpg", "a")])
    with pytest.raises(DataError, match="keep one list file"):
        open_source(config(tmp_path), "train")


@pytest.mark.parametrize("name", ["train.csv", "train.txt", "classes.txt", "images_variant_train.txt"])
def test_other_encodings_are_one_line_errors_with_file_and_line(tmp_path, name):
    rows = make_listed(tmp_path, count=3)
    os.makedirs(tmp_path / "images")
    (tmp_path / "images" / "0000000.jpg").write_bytes((tmp_path / rows[0][0]).read_bytes())
    good = {"train.csv": "image,label\n" + "".join(f"{r},{lab}\n" for r, lab in rows),
            "train.txt": "".join(f"{r} {lab}\n" for r, lab in rows),
            "classes.txt": "".join(lab + "\n" for lab in ODD_LABELS),
            "images_variant_train.txt": "0000000 F-16A/B\n"}
    (tmp_path / name).write_text(good[name] + "pics/002.jpg Café\n", encoding="latin-1")
    if name == "classes.txt":
        write_csv(tmp_path / "train.csv", rows)
    lineno = good[name].count("\n") + 1
    with pytest.raises(DataError, match=rf"{name}:{lineno}: not UTF-8 text \(byte 0xe9\)"):
        open_source(config(tmp_path), "train")


def test_bad_list_from_the_command_line_is_one_line(tmp_path):
    make_listed(tmp_path, count=2)
    (tmp_path / "train.csv").write_bytes("image,label\npics/000.jpg,Café\n".encode("cp1252"))
    proc = run_main("finetune.py", "--data_dir", tmp_path, *TINY_TRAIN_ARGS, "--ckpt_save_dir", tmp_path / "run",
                    "--train_split", "train", "--check_cache_dir", "off")
    assert_one_line_error(proc, "train.csv:2: not UTF-8 text", code=1)


def test_an_integer_label_far_beyond_the_others_is_one_line_naming_its_line(tmp_path):
    rows = make_listed(tmp_path, count=10, labels=[str(i) for i in range(10)])
    rows[6] = (rows[6][0], "100000000")
    (tmp_path / "train.txt").write_text("".join(f"{rel} {label}\n" for rel, label in rows), encoding="utf-8")
    proc = run_main("finetune.py", "--data_dir", tmp_path, *TINY_TRAIN_ARGS, "--ckpt_save_dir", tmp_path / "run",
                    "--train_split", "train", "--check_cache_dir", "off")
    assert_one_line_error(proc, "train.txt:7: label 100000000 makes 100000001 classes (0 .. 100000000) of which only "
                                "10 have images", code=1)
    assert proc.stdout == ""  # before the split is even checked, let alone a model built


# ---- unsplit folders -----------------------------------------------------------------------------

def make_class_folders(root, counts):
    """``root/<class>/<i>.jpg`` for ``counts = {class: n}``; returns the files' ``(path, mtime_ns)``."""
    seed = 0
    for name, n in counts.items():
        for i in range(n):
            write_image(str(root / name / f"{i:03d}.jpg"), seed=seed)
            seed += 1
    return snapshot(root)


def snapshot(root):
    return sorted((os.path.join(d, f), os.stat(os.path.join(d, f)).st_mtime_ns)
                  for d, _, files in os.walk(root) for f in files if f.endswith(".jpg"))


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return [tuple(row) for row in csv.reader(f)][1:]


COUNTS = {"cat": 10, "dog": 20, "bird, small": 5, "x": 1}


def test_split_is_stratified_deterministic_and_touches_no_image(tmp_path):
    before = make_class_folders(tmp_path, COUNTS)
    proc = run_script("tools/split_folder.py", "--data_dir", tmp_path, "--val_fraction", "0.2",
                      "--test_fraction", "0.2", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    splits = {s: read_rows(tmp_path / f"{s}.csv") for s in ("train", "val", "test")}
    for name, n in COUNTS.items():
        got = {s: sum(label == name for _, label in rows) for s, rows in splits.items()}
        assert got == dict(zip(("train", "val", "test"), _expected(n))), (name, got)
    listed = [path for rows in splits.values() for path, _ in rows]
    assert len(listed) == len(set(listed)) == sum(COUNTS.values())  # disjoint, all images
    assert all(path.split("/")[0] == label for rows in splits.values() for path, label in rows)
    assert snapshot(tmp_path) == before  # nothing copied, moved or touched
    again = splitting.stratified_split(splitting.class_images(str(tmp_path), str(tmp_path)), 0.2, 0.2, seed=3)
    assert {s: [tuple(r) for r in rows] for s, rows in again.items()} == splits
    other = splitting.stratified_split(splitting.class_images(str(tmp_path), str(tmp_path)), 0.2, 0.2, seed=4)
    assert other["val"] != splits["val"]


def _expected(n):
    """(train, val, test) of a class of n images at 0.2/0.2: rounded, one each from 3 images, one kept to train."""
    val, test = (max(round(n * 0.2), 1) if n >= 2 else 0), (max(round(n * 0.2), 1) if n >= 3 else 0)
    return n - val - test, val, test


def test_split_rerun_is_a_noop_and_other_arguments_are_refused(tmp_path):
    make_class_folders(tmp_path / "data", {"a": 6, "b": 6})
    out = tmp_path / "lists"
    args = ["--data_dir", tmp_path / "data", "--val_fraction", "0.5", "--out_dir", out, "--test_fraction", "0.2"]
    assert run_script("tools/split_folder.py", *args).returncode == 0
    stamps = {n: os.stat(out / n).st_mtime_ns for n in os.listdir(out)}
    proc = run_script("tools/split_folder.py", *args)
    assert proc.returncode == 0 and "already split: nothing written" in proc.stdout
    assert {n: os.stat(out / n).st_mtime_ns for n in os.listdir(out)} == stamps
    val = (out / "val.csv").read_text(encoding="utf-8")
    proc = run_script("tools/split_folder.py", *args[:-2], "--seed", "1")
    assert_one_line_error(proc, "train.csv exists and holds another split; --overwrite", code=1)
    assert (out / "val.csv").read_text(encoding="utf-8") == val and (out / "test.csv").exists()
    proc = run_script("tools/split_folder.py", *args[:-2], "--seed", "1", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert not (out / "test.csv").exists()  # the old test split would overlap the new train split
    assert sorted(os.listdir(tmp_path / "data")) == ["a", "b"]  # nothing written into the data


@pytest.mark.parametrize("flags, needle", [(["--val_fraction", "1.5"], "'val_fraction' must be in [0, 1)"),
                                           (["--val_fraction", "0.6", "--test_fraction", "0.5"], "must be < 1")])
def test_split_bad_fractions_are_usage_errors(tmp_path, flags, needle):
    make_class_folders(tmp_path, {"a": 3})
    assert_one_line_error(run_script("tools/split_folder.py", "--data_dir", tmp_path, *flags), needle, code=2)


def test_finetune_val_fraction_and_validate_evaluates_the_held_out_images(tmp_path):
    data = tmp_path / "photos"
    make_class_folders(data, {"T-shirt/top".replace("/", "_"): 8, "Ankle boot": 8, "Bag": 4})
    run = tmp_path / "run"
    args = [a for a in TINY_TRAIN_ARGS if a not in ("trainval", "test", "--train_split", "--val_split")]
    args += ["--mode", "1", "--model", "resnet18"]   # PyNative (validate.py too, from the saved config)
    proc = run_script("finetune.py", "--data_dir", data, *args, "--epoch_size", "1", "--val_fraction", "0.25",
                      "--split_seed", "5", "--ckpt_save_dir", run, "--check_cache_dir", tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    val_rows = read_rows(run / "split" / "val.csv")
    train_rows = read_rows(run / "split" / "train.csv")
    assert len(val_rows) == 2 + 2 + 1 and len(train_rows) == 20 - 5
    assert not {p for p, _ in val_rows} & {p for p, _ in train_rows}
    assert sorted(os.listdir(data)) == ["Ankle boot", "Bag", "T-shirt_top"]  # data folder untouched
    with open(run / "config.yaml", encoding="utf-8") as f:
        saved = f.read()
    assert f"list_dir: {run / 'split'}" in saved and "dataset_format: list" in saved

    ckpt = run / "resnet18_best.ckpt"
    val = run_script("validate.py", "--config", run / "config.yaml", "--ckpt_path", ckpt)
    assert val.returncode == 0, val.stderr
    assert "on val (5 images, " in val.stdout
    cfg = parse_config(["--config", str(run / "config.yaml")], "validate")  # the split validate.py opens
    _, source = open_source(cfg, cfg.val_split)
    assert [(path, source.class_names[k]) for path, k in zip(source.paths, source.labels)] == \
        [(os.path.join(str(data), p), label) for p, label in val_rows]


def test_val_fraction_refuses_a_folder_that_has_a_val_split(tmp_path):
    make_class_folders(tmp_path / "train", {"a": 2})
    make_class_folders(tmp_path / "val", {"a": 2})
    cfg = config(tmp_path, val_fraction=0.2, ckpt_save_dir=str(tmp_path / "run"))
    with pytest.raises(UsageError, match="has split 'val'"):
        splitting.hold_out_val(cfg, str(tmp_path / "scratch"))


def test_val_fraction_refuses_an_annotation_split(tiny_aircraft, tmp_path):
    cfg = config(tiny_aircraft, val_fraction=0.2, train_split="trainval", ckpt_save_dir=str(tmp_path / "run"))
    with pytest.raises(UsageError, match="split 'trainval' of .* is a list or annotation file"):
        splitting.hold_out_val(cfg, str(tmp_path / "scratch"))
    assert not os.path.exists(tmp_path / "run")


# ---- odd files -----------------------------------------------------------------------------------

def short_png(path, width=16, height=16):
    """A PNG whose chunks and checksums are valid but whose image data holds half the rows."""
    import struct
    import zlib

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = b"".join(b"\x00" + bytes(range(width * 3)) for _ in range(height // 2))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))


def test_short_png_is_caught_at_open_as_mindspore_would_fail_on_it(tmp_path):
    from tools.datasets.image_check import check_image

    import mindspore.dataset.vision as vision

    short_png(tmp_path / "short.png")
    with Image.open(tmp_path / "short.png") as image:
        image.load()  # Pillow alone accepts it
    with pytest.raises(RuntimeError, match="decode failed"):
        vision.Decode()(np.fromfile(tmp_path / "short.png", dtype=np.uint8))
    ok, reason, _ = check_image(str(tmp_path / "short.png"))
    assert not ok and "image data short" in reason


def test_broken_symlinks_are_named_in_the_warning(tmp_path, capsys):
    make_class_folders(tmp_path / "train", {"a": 3, "b": 3})
    os.symlink(tmp_path / "gone.jpg", tmp_path / "train" / "a" / "link.jpg")
    short_png(tmp_path / "train" / "b" / "short.png")
    _, source = open_source(config(tmp_path), "train")
    err = capsys.readouterr().err
    assert f"skipping {tmp_path / 'train' / 'a' / 'link.jpg'}: broken symbolic link" in err
    assert f"skipping {tmp_path / 'train' / 'b' / 'short.png'}: corrupt or truncated image" in err
    assert len(source) == 6
    inputs = find_images([str(tmp_path / "train")])  # predict.py --input on the same folder
    data = input_split(config(tmp_path), inputs, ["a", "b"])
    assert data.size == 6 and str(tmp_path / "train" / "a" / "link.jpg") in dict(data.skipped)


def test_hidden_folders_are_not_classes_and_listed_broken_links_are_named(tmp_path, capsys):
    make_class_folders(tmp_path / "train", {"a": 2, "b": 2})
    make_class_folders(tmp_path / "train" / ".ipynb_checkpoints", {"c": 1})
    _, source = open_source(config(tmp_path), "train")
    assert source.class_names == ["a", "b"] and len(source) == 4
    os.symlink(tmp_path / "gone.jpg", tmp_path / "train" / "a" / "link.jpg")
    write_csv(tmp_path / "listed.csv", [("train/a/000.jpg", "a"), ("train/a/link.jpg", "a"), ("train/b/001.jpg", "b")])
    capsys.readouterr()
    _, listed = open_source(config(tmp_path), "listed")
    assert len(listed) == 2
    assert f"skipping {tmp_path / 'train' / 'a' / 'link.jpg'}: broken symbolic link" in capsys.readouterr().err


def test_images_in_subfolders_of_a_class_folder_are_read_hidden_ones_are_not(tmp_path):
    make_class_folders(tmp_path / "train", {"a": 2, "b": 1})
    write_image(str(tmp_path / "train" / "a" / "more" / "deeper" / "x.jpg"), seed=10)
    write_image(str(tmp_path / "train" / "b" / "more" / "y.jpg"), seed=11)
    write_image(str(tmp_path / "train" / "a" / ".ipynb_checkpoints" / "z.jpg"), seed=12)
    write_image(str(tmp_path / "train" / "a" / "more" / "._x.jpg"), seed=13)
    os.symlink(tmp_path / "train" / "a", tmp_path / "train" / "a" / "more" / "loop")  # read once, not forever
    _, source = open_source(config(tmp_path), "train")
    train = tmp_path / "train"
    assert source.paths == [str(train / "a" / "000.jpg"), str(train / "a" / "001.jpg"),
                            str(train / "a" / "more" / "deeper" / "x.jpg"), str(train / "b" / "000.jpg"),
                            str(train / "b" / "more" / "y.jpg")]
    assert list(source.labels) == [0, 0, 0, 1, 1] and source.class_names == ["a", "b"]


def test_predict_input_folders_skip_hidden_files_and_folders(tmp_path):
    make_class_folders(tmp_path / "photos", {"a": 2})
    write_image(str(tmp_path / "photos" / ".ipynb_checkpoints" / "z.jpg"), seed=12)
    write_image(str(tmp_path / "photos" / "a" / "._000.jpg"), seed=13)
    write_image(str(tmp_path / ".hidden.jpg"), seed=14)
    assert find_images([str(tmp_path / "photos")]) == [str(tmp_path / "photos" / "a" / f"00{i}.jpg") for i in (0, 1)]
    assert find_images([str(tmp_path / ".hidden.jpg")]) == [str(tmp_path / ".hidden.jpg")]  # named: taken


# ---- the check cache -----------------------------------------------------------------------------

@pytest.fixture
def counted(monkeypatch):
    """Count the files tools.datasets.check_cache really checks."""
    calls = []
    real = check_cache.check_image

    def check(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(check_cache, "check_image", check)
    return calls


def test_cache_rechecks_only_changed_files_and_lives_outside_the_data(tmp_path, counted):
    data, cache = tmp_path / "data", tmp_path / "cache"
    make_class_folders(data, {"a": 5})
    paths = sorted(str(data / "a" / n) for n in os.listdir(data / "a"))
    first = check_cache.check_images(paths, "train", str(cache))
    assert counted == paths and all(ok for ok, _, _, _ in first) and len(os.listdir(cache)) == 1
    counted.clear()
    assert check_cache.check_images(paths, "train", str(cache)) == first and counted == []
    with open(paths[2], "r+b") as f:  # same size, new content and mtime: truncated JPEG tail zeroed
        f.seek(os.path.getsize(paths[2]) // 2)
        f.write(b"\0" * (os.path.getsize(paths[2]) // 2))
    os.utime(paths[2], ns=(0, os.stat(paths[2]).st_mtime_ns + 10**9))
    counted.clear()
    again = check_cache.check_images(paths, "train", str(cache))
    assert counted == [paths[2]]
    assert not again[2][0] and again[:2] + again[3:] == first[:2] + first[3:]
    assert sorted(os.listdir(data / "a")) == sorted(os.path.basename(p) for p in paths)  # nothing in the data


def test_cache_damaged_or_unwritable_only_costs_time(tmp_path, counted, capsys):
    make_class_folders(tmp_path / "data", {"a": 3})
    paths = sorted(str(tmp_path / "data" / "a" / n) for n in os.listdir(tmp_path / "data" / "a"))
    reference = check_cache.check_images(paths, "train", str(tmp_path / "cache"))
    (cache_file,) = os.listdir(tmp_path / "cache")
    (tmp_path / "cache" / cache_file).write_text("{not json", encoding="utf-8")
    assert check_cache.check_images(paths, "train", str(tmp_path / "cache")) == reference
    (tmp_path / "file").write_text("", encoding="utf-8")
    assert check_cache.check_images(paths, "train", str(tmp_path / "file" / "cache")) == reference
    assert "warning: cannot write the image-check cache" in capsys.readouterr().err


def test_new_files_are_checked_in_parallel_with_the_same_results(tmp_path):
    make_class_folders(tmp_path, {"a": check_cache.PARALLEL_MIN + 6})
    paths = sorted(str(tmp_path / "a" / n) for n in os.listdir(tmp_path / "a"))
    (tmp_path / "a" / "000.jpg").write_bytes(b"not an image")
    parallel = check_cache.check_images(paths, "train", None, workers=2)
    serial = [(*check_cache.check_image(p), check_cache.file_crc(p)) for p in paths]
    assert parallel == serial and parallel[0][:2] == (False, "not an image")


def test_cache_rechecks_a_file_whose_bytes_changed_but_not_its_size_or_mtime(tmp_path, counted):
    make_class_folders(tmp_path / "data", {"a": 3})
    paths = sorted(str(tmp_path / "data" / "a" / n) for n in os.listdir(tmp_path / "data" / "a"))
    first = check_cache.check_images(paths, "train", str(tmp_path / "cache"))
    stat = os.stat(paths[1])
    with open(paths[1], "r+b") as f:
        f.write(np.random.default_rng(0).bytes(stat.st_size))
    os.utime(paths[1], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    counted.clear()
    again = check_cache.check_images(paths, "train", str(tmp_path / "cache"))
    assert counted == [paths[1]] and again[1][:2] == (False, "not an image") and again[::2] == first[::2]
    counted.clear()
    assert check_cache.check_images(paths, "train", str(tmp_path / "cache")) == again and counted == []


# ---- class balance -------------------------------------------------------------------------------

def test_balance_summary_and_warning(tmp_path, capsys):
    from tools.datasets.loader import report_balance

    make_class_folders(tmp_path / "train", {"a": 12, "b": 3, "c": 1, "d": 0})
    os.makedirs(tmp_path / "train" / "d", exist_ok=True)
    cfg = config(tmp_path, imbalance_warn_ratio=10.0)
    _, source = open_source(cfg, "train")
    report_balance(cfg, "train", source)
    out, err = capsys.readouterr()
    counts = np.bincount(source.labels, minlength=4)
    assert list(counts) == [12, 3, 1, 0]
    assert (f"split 'train': 16 images, 4 classes; images per class min 0 / median {np.median(counts):g} / max 12, "
            "imbalance ratio 12.0; 1 classes without images (e.g. 'd')") in out
    assert "warning: split 'train' is imbalanced: class 'a' has 12 images, 'c' 1 (ratio 12.0 > " in err
    assert "mean per-class accuracy" in err and "class_weights" in err
    assert class_balance.warning("train", counts, source.class_names, 12.0) is None
    assert class_balance.warning("train", counts, source.class_names, 0) is None
