"""tools/split_aircraft.py on a tiny fake FGVC-Aircraft data/ folder."""
import errno
import json
import os
import shutil
import subprocess
import sys

from conftest import ROOT
from tools import split_aircraft
from tools.core.errors import DataError, UsageError
from tools.datasets import class_names
from tools.datasets.aircraft_tree import INFO_FILE, MODES

import pytest
from PIL import Image

SCRIPT = os.path.join(ROOT, "tools", "split_aircraft.py")
VARIANTS = ["Cessna 172", "F-16A/B", "707-320", "A330-200"]  # not sorted on purpose
FAMILY = {"Cessna 172": "Cessna 172", "F-16A/B": "F-16", "707-320": "Boeing 707", "A330-200": "A330"}
TRAINVAL = [("0001", "F-16A/B"), ("0002", "Cessna 172"), ("0003", "707-320"), ("0004", "A330-200"),
            ("0005", "F-16A/B"), ("0006", "707-320")]
TEST = [("0007", "Cessna 172"), ("0008", "F-16A/B"), ("0009", "707-320")]  # no A330-200
SPLITS = {"trainval": TRAINVAL, "test": TEST}


def write_annotation(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(f"{image_id} {label}\n" for image_id, label in rows)


@pytest.fixture
def data(tmp_path):
    """A data/ folder: 9 small distinct JPEGs, variant and family annotations, variants.txt."""
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    for i, (image_id, _) in enumerate(TRAINVAL + TEST):
        Image.new("RGB", (8, 8), (25 * i, 255 - 25 * i, 7 * i)).save(root / "images" / f"{image_id}.jpg")
    (root / "variants.txt").write_text("".join(v + "\n" for v in VARIANTS), encoding="utf-8")
    for split, rows in SPLITS.items():
        write_annotation(root / f"images_variant_{split}.txt", rows)
        write_annotation(root / f"images_family_{split}.txt", [(i, FAMILY[v]) for i, v in rows])
    return root


def originals(data):
    return {i: (data / "images" / f"{i}.jpg").read_bytes() for i, _ in TRAINVAL + TEST}


def tree_files(out):
    return sorted(os.path.relpath(os.path.join(d, n), out)
                  for split in SPLITS for d, _, names in os.walk(out / split) for n in names)


def expected_files():
    return sorted(os.path.join(split, class_names.safe_dirname(label), f"{i}.jpg")
                  for split, rows in SPLITS.items() for i, label in rows)


def run(data, *flags):
    return split_aircraft.main(["--data_dir", str(data), *flags])


def cli(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=ROOT, capture_output=True, text=True)


def info_folders(out):
    return json.loads((out / INFO_FILE).read_text(encoding="utf-8"))["folders"]


def check_tree(out, before):
    assert tree_files(out) == expected_files()
    for split, rows in SPLITS.items():
        for image_id, label in rows:
            assert (out / split / class_names.safe_dirname(label) / f"{image_id}.jpg").read_bytes() == before[image_id]
    classes = class_names.read_names(out / class_names.CLASSES_FILE)
    assert classes == VARIANTS
    info = json.loads((out / INFO_FILE).read_text(encoding="utf-8"))
    assert info == {"level": "variant", "classes": VARIANTS, "folders": [class_names.safe_dirname(c) for c in VARIANTS],
                    "splits": {"trainval": 6, "test": 3}}
    for split in SPLITS:
        assert sorted(os.listdir(out / split)) == sorted(info["folders"])


def test_default_tree_in_data_dir(data, capsys):
    before = originals(data)
    assert run(data) == 0
    check_tree(data, before)
    assert "F-16A_B" in info_folders(data) and "F-16A/B" in class_names.read_names(data / "classes.txt")
    for image_id, label in TRAINVAL:
        dst = data / "trainval" / class_names.safe_dirname(label) / f"{image_id}.jpg"
        assert os.path.samefile(data / "images" / f"{image_id}.jpg", dst)
    out = capsys.readouterr().out
    assert "A330-200" in out
    assert out.strip().splitlines()[-1] == f"wrote 6 trainval + 3 test images to {data} (hardlink)"


@pytest.mark.parametrize("mode", MODES)
def test_modes_and_rerun(data, tmp_path, mode, capsys):
    before, out = originals(data), tmp_path / "out"
    assert run(data, "--out_dir", str(out), "--mode", mode) == 0
    assert run(data, "--out_dir", str(out), "--mode", mode) == 0
    check_tree(out, before)
    assert "9 already in place" in capsys.readouterr().out
    src = data / "images" / "0001.jpg"
    dst = out / "trainval" / "F-16A_B" / "0001.jpg"
    if mode == "hardlink":
        assert os.stat(src).st_ino == os.stat(dst).st_ino
    elif mode == "symlink":
        assert dst.is_symlink() and os.readlink(dst) == str(src)
    elif mode == "copy":
        assert not dst.is_symlink() and not os.path.samefile(src, dst)
    else:
        assert os.listdir(data / "images") == []


def test_hardlink_falls_back_to_copy(data, tmp_path, monkeypatch, capsys):
    def no_link(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    before, out = originals(data), tmp_path / "out"
    assert run(data, "--out_dir", str(out)) == 0
    assert run(data, "--out_dir", str(out)) == 0
    check_tree(out, before)
    text = capsys.readouterr().out
    assert text.count("note: cannot hardlink") == 1 and "(copy)" in text


def test_interrupted_move_completes(data, tmp_path):
    before, out = originals(data), tmp_path / "out"
    for split, rows in SPLITS.items():
        for n, (image_id, label) in enumerate(rows):
            folder = out / split / class_names.safe_dirname(label)
            folder.mkdir(parents=True, exist_ok=True)
            src = data / "images" / f"{image_id}.jpg"
            if n % 2 == 0:
                os.rename(src, folder / f"{image_id}.jpg")
            elif image_id == "0002":  # copied but not yet removed
                shutil.copyfile(src, folder / f"{image_id}.jpg")
    assert run(data, "--out_dir", str(out), "--mode", "move") == 0
    check_tree(out, before)
    assert os.listdir(data / "images") == []


def test_other_level_in_same_out_dir_is_refused(data, tmp_path):
    out = tmp_path / "out"
    run(data, "--out_dir", str(out))
    with pytest.raises(DataError, match="other classes"):
        run(data, "--out_dir", str(out), "--level", "family")


def test_different_existing_file_is_not_overwritten(data, tmp_path):
    out = tmp_path / "out"
    dst = out / "test" / "Cessna 172" / "0007.jpg"
    dst.parent.mkdir(parents=True)
    dst.write_bytes(b"other")
    with pytest.raises(DataError, match="0007.jpg already exists"):
        run(data, "--out_dir", str(out))
    assert dst.read_bytes() == b"other" and tree_files(out) == [os.path.join("test", "Cessna 172", "0007.jpg")]


def test_out_dir_inside_images_is_refused(data):
    with pytest.raises(UsageError, match="inside"):
        run(data, "--out_dir", str(data / "images" / "tree"))


def test_move_of_an_image_in_two_splits_is_refused(data):
    write_annotation(data / "images_variant_test.txt", TEST + [("0001", "F-16A/B")])
    with pytest.raises(UsageError, match="0001"):
        run(data, "--mode", "move")


def assert_one_line_error(result, *words, code=1):
    assert result.returncode == code
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr


def test_cli_missing_image(data):
    os.remove(data / "images" / "0008.jpg")
    result = cli("--data_dir", str(data))
    assert_one_line_error(result, "images_variant_test.txt:2", str(data / "images" / "0008.jpg"))
    assert not (data / "trainval").exists()  # nothing written before the check


def test_cli_malformed_line(data):
    with open(data / "images_variant_trainval.txt", "a", encoding="utf-8") as f:
        f.write("0010\n")
    assert_one_line_error(cli("--data_dir", str(data)), "images_variant_trainval.txt:7")


def test_cli_unknown_split(data):
    result = cli("--data_dir", str(data), "--splits", "trainval", "val")
    assert_one_line_error(result, "'val'", "test, trainval", code=2)
