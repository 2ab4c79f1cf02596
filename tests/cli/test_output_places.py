"""Outputs never land in the data: an output folder inside a split folder, a class folder or images/ of the data
being read is refused in one line (exit 2) with nothing written; a folder beside the split folders is fine."""
import hashlib
import os
import shutil
from types import SimpleNamespace

from conftest import DEMO, assert_one_line_error, run_main
from tools.core.errors import UsageError
from tools.core.fileio import check_outside_data, data_folders

import pytest


def tree_digest(root):
    """Every path under ``root`` with its bytes: any file or folder written there changes it."""
    digest = hashlib.sha256()
    for folder, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        digest.update(folder.encode())
        for name in sorted(files):
            digest.update(name.encode())
            with open(os.path.join(folder, name), "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


def class_folders(root, per_class=3):
    """``root/<class>/<n>.jpg``: a folder of class folders made of demo images."""
    images = sorted(os.listdir(os.path.join(DEMO, "images")))
    for c, name in enumerate(["coat", "shirt"]):
        os.makedirs(os.path.join(root, name))
        for k in range(per_class):
            shutil.copy(os.path.join(DEMO, "images", images[c * per_class + k]), os.path.join(root, name, f"{k}.jpg"))
    return str(root)


@pytest.fixture
def split_tree(tmp_path):
    """``data/train/<class>/`` and ``data/val/<class>/``."""
    data = tmp_path / "data"
    for split in ("train", "val"):
        class_folders(data / split)
    return data


def refused(proc, data, before, *needles):
    assert_one_line_error(proc, "inside the data folder", *needles, code=2)
    assert tree_digest(data) == before


@pytest.mark.parametrize("inside", [("train",), ("train", "runs"), ("val", "coat", "runs")])
def test_finetune_run_folder_inside_a_split_folder_is_refused(split_tree, inside):
    before = tree_digest(split_tree)
    proc = run_main("finetune.py", "--data_dir", split_tree, "--ckpt_save_dir", os.path.join(split_tree, *inside))
    refused(proc, split_tree, before, "ckpt_save_dir", os.path.join(str(split_tree), inside[0]))


def test_finetune_val_fraction_run_folder_inside_the_class_folders_is_refused(tmp_path):
    data = class_folders(tmp_path / "photos")
    before = tree_digest(data)
    proc = run_main("finetune.py", "--data_dir", data, "--val_fraction", "0.3", "--ckpt_save_dir",
                    os.path.join(data, "runs"))
    refused(proc, data, before, "ckpt_save_dir")


def test_a_folder_beside_the_split_folders_is_no_data(split_tree):
    cfg = SimpleNamespace(data_dir=str(split_tree), val_fraction=0.0)
    folders = data_folders(cfg, ["train", "val"])
    assert folders == [str(split_tree / "train"), str(split_tree / "val"), str(split_tree / "images")]
    check_outside_data(str(split_tree / "runs"), "ckpt_save_dir", folders)
    check_outside_data(str(split_tree), "ckpt_save_dir", folders)
    with pytest.raises(UsageError, match="inside the data folder"):
        check_outside_data(str(split_tree / "train" / "coat"), "ckpt_save_dir", folders)


def test_a_symlink_into_the_data_is_inside(split_tree, tmp_path):
    os.symlink(split_tree / "train", tmp_path / "link")
    with pytest.raises(UsageError, match="inside the data folder"):
        check_outside_data(str(tmp_path / "link" / "runs"), "out_dir", [str(split_tree / "train")])


def test_data_report_out_dir_inside_a_split_folder_is_refused(split_tree):
    before = tree_digest(split_tree)
    proc = run_main("tools/data_report.py", "--data_dir", split_tree, "--out_dir", split_tree / "val" / "report")
    refused(proc, split_tree, before, "--out_dir")


def test_data_report_out_dir_inside_a_folder_of_class_folders_is_refused(tmp_path):
    data = class_folders(tmp_path / "photos")
    before = tree_digest(data)
    proc = run_main("tools/data_report.py", "--data_dir", data, "--out_dir", os.path.join(data, "report"))
    refused(proc, data, before, "--out_dir")


def test_data_report_beside_the_split_folders_is_written(split_tree):
    proc = run_main("tools/data_report.py", "--data_dir", split_tree, "--out_dir", split_tree / "report")
    assert proc.returncode == 0, proc.stderr
    assert "| coat |" in (split_tree / "report" / "data_report.md").read_text()


def test_split_folder_out_dir_inside_the_class_folders_is_refused(tmp_path):
    data = class_folders(tmp_path / "photos")
    before = tree_digest(data)
    proc = run_main("tools/split_folder.py", "--data_dir", data, "--val_fraction", "0.3", "--out_dir",
                    os.path.join(data, "lists"))
    refused(proc, data, before, "--out_dir")
    proc = run_main("tools/split_folder.py", "--data_dir", data, "--val_fraction", "0.3")  # list files beside
    assert proc.returncode == 0, proc.stderr
    assert sorted(f for f in os.listdir(data) if f.endswith(".csv")) == ["train.csv", "val.csv"]


def test_predict_out_dir_inside_the_split_folder_is_refused(split_tree, tmp_path):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"never read")
    before = tree_digest(split_tree)
    proc = run_main("predict.py", "--data_dir", split_tree, "--ckpt_path", ckpt, "--out_dir",
                    split_tree / "val" / "coat")
    refused(proc, split_tree, before, "out_dir")


def test_predict_out_dir_inside_an_input_folder_is_refused(split_tree, tmp_path):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"never read")
    photos = split_tree / "val"
    before = tree_digest(split_tree)
    proc = run_main("predict.py", "--ckpt_path", ckpt, "--input", photos, "--out_dir", photos / "coat" / "preds")
    refused(proc, split_tree, before, "out_dir")


@pytest.mark.parametrize("script, flags, key", [
    ("validate.py", ["--split", "val", "--report_dir", "{data}/val/coat/report"], "report_dir"),
    ("validate.py", ["--split", "val", "--out", "{data}/val/coat/m.json"], "out"),
    ("tools/show_batch.py", ["--train_split", "train", "--out", "{data}/train/coat/batch.png"], "out"),
])
def test_evaluation_and_preview_outputs_inside_the_data_are_refused(script, flags, key, split_tree, tmp_path):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"never read")
    before = tree_digest(split_tree)
    proc = run_main(script, "--data_dir", split_tree, "--ckpt_path", ckpt,
                    *[flag.format(data=split_tree) for flag in flags])
    refused(proc, split_tree, before, key)


def test_lr_find_out_inside_the_split_folder_is_refused(split_tree):
    before = tree_digest(split_tree)
    proc = run_main("tools/lr_find.py", "--data_dir", split_tree, "--train_split", "train", "--out",
                    split_tree / "train" / "coat" / "lr")
    refused(proc, split_tree, before, "out")


def test_compare_modes_out_inside_the_split_folder_is_refused_before_any_mode(split_tree, tmp_path):
    before, config = tree_digest(split_tree), tmp_path / "c.yaml"
    config.write_text(f"data_dir: {split_tree}\n")
    proc = run_main("tools/compare_modes.py", "--config", config, "--out", split_tree / "val" / "modes")
    refused(proc, split_tree, before, "--out")
    assert proc.stderr.count("error:") == 1 and "[" not in proc.stdout  # no mode started


def test_split_aircraft_out_dir_inside_images_is_refused(tmp_path):
    from conftest import make_tiny_aircraft

    data = make_tiny_aircraft(str(tmp_path / "data"), per_class={"trainval": 1})
    before = tree_digest(data)
    proc = run_main("tools/split_aircraft.py", "--data_dir", data, "--out_dir", os.path.join(data, "images", "tree"))
    refused(proc, data, before, "--out_dir")


# ---- reports and export bundles are replaced whole ----------------------------------------------------

def test_atomic_folder_replaces_whole_or_keeps_the_earlier_one(tmp_path):
    from tools.core.errors import DataError
    from tools.core.fileio import atomic_folder

    report = tmp_path / "report"
    for text in ("one", "two"):
        with atomic_folder(str(report)) as tmp:
            (tmp_path / tmp / "a.txt").write_text(text)
            if text == "one":
                (tmp_path / tmp / "only_in_one.txt").write_text(text)
    assert sorted(os.listdir(report)) == ["a.txt"] and (report / "a.txt").read_text() == "two"
    with pytest.raises(DataError, match="cannot write"):  # a full disk: one line, the earlier report kept
        with atomic_folder(str(report)) as tmp:
            (tmp_path / tmp / "a.txt").write_text("three")
            raise OSError(28, "No space left on device")
    assert sorted(os.listdir(tmp_path)) == ["report"] and (report / "a.txt").read_text() == "two"
    (report / "mine.txt").write_text("kept")
    with atomic_folder(str(report), merge=True) as tmp:  # merge: its files replace theirs, others are kept
        (tmp_path / tmp / "a.txt").write_text("four")
    assert sorted(os.listdir(report)) == ["a.txt", "mine.txt"] and (report / "a.txt").read_text() == "four"


def test_atomic_folder_keeps_the_earlier_mode_or_takes_the_umask(tmp_path):
    from tools.core.fileio import atomic_folder

    mask = os.umask(0o022)
    try:
        with atomic_folder(str(tmp_path / "new")) as tmp:
            (tmp_path / tmp / "a.txt").write_text("x")
        assert os.stat(tmp_path / "new").st_mode & 0o777 == 0o755  # not mkdtemp's 0700
        os.chmod(tmp_path / "new", 0o750)
        with atomic_folder(str(tmp_path / "new")) as tmp:
            (tmp_path / tmp / "a.txt").write_text("y")
        assert os.stat(tmp_path / "new").st_mode & 0o777 == 0o750
    finally:
        os.umask(mask)


def fake_evaluation(tmp_path, seed):
    """What validate.write_reports is given, for 3 classes and 12 images of a random model."""
    from tools.evaluate import calibration
    from tools.report import evaluation as reports

    import numpy as np

    rng = np.random.default_rng(seed)
    views, labels, names = rng.normal(size=(1, 12, 3)), np.arange(12) % 3, ["a", "b", "c"]
    result, matrix = reports.class_report(calibration.log_probabilities(views), labels, names)
    result.update(split="val", checkpoint=str(tmp_path / "m.ckpt"), num_classes=3, ece=0.1)
    cfg = SimpleNamespace(grid_size=0, ckpt_path=str(tmp_path / "m.ckpt"), model="m")
    data = SimpleNamespace(class_names=names, paths=[])
    return cfg, result, matrix, views, labels, data


def test_a_failed_report_leaves_the_earlier_report_as_it_was(tmp_path, monkeypatch):
    import validate
    from tools.report import evaluation as reports

    folder = tmp_path / "report"
    cfg, result, matrix, views, labels, data = fake_evaluation(tmp_path, 0)
    validate.write_reports(cfg, str(folder), result, matrix, views, labels, data, None)
    before = tree_digest(folder)

    def boom(*args):
        raise RuntimeError("simulated failure after the first files")

    monkeypatch.setattr(reports, "write_most_confused_csv", boom)
    cfg, result, matrix, views, labels, data = fake_evaluation(tmp_path, 1)
    with pytest.raises(RuntimeError, match="simulated"):
        validate.write_reports(cfg, str(folder), result, matrix, views, labels, data, None)
    assert tree_digest(folder) == before and sorted(os.listdir(tmp_path)) == ["report"]


def test_report_dir_that_is_no_report_is_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model_best.ckpt").write_bytes(b"weights")
    before = tree_digest(run)
    proc = run_main("validate.py", "--ckpt_path", run / "model_best.ckpt", "--report_dir", run)
    assert_one_line_error(proc, "'report_dir'", "no report.html", code=2)
    assert tree_digest(run) == before


def test_a_failed_export_leaves_the_earlier_bundle_as_it_was(trained_run, tmp_path, monkeypatch):
    import export

    out = trained_run["out"]
    (tmp_path / "model").mkdir()
    for ext in (".mindir", ".classes.json"):   # an earlier bundle
        (tmp_path / "model" / f"model{ext}").write_bytes(b"earlier export")
    before = tree_digest(tmp_path)

    def boom(*args):
        raise RuntimeError("simulated failure after the MindIR")

    monkeypatch.setattr(export, "write_json", boom)
    with pytest.raises(RuntimeError, match="simulated"):
        run_main("export.py", "--config", os.path.join(out, "config.yaml"), "--ckpt_path",
                 os.path.join(out, "mobilenet_v3_small_100_best.ckpt"), "--parity_count", "1", "--mode", "1",
                 "--out", tmp_path / "model")
    assert tree_digest(tmp_path) == before
