"""Stratified splitting of a folder of class folders into list files: ``tools/split_folder.py`` and
``finetune.py --val_fraction`` (:func:`hold_out_val`, :func:`keep_held_out`) share it, so the same data and
seed give the same split both ways.

Each class is split on its own, shuffled by a generator seeded with the seed and the class name, so adding
a class leaves the others' split as it was; a class with at least two images keeps one for training and
gives at least one to val (three: one to test as well). Nothing is copied or moved: the lists are
``image,label`` CSV files, and a list that would change is refused unless ``overwrite``.
"""
import csv
import io
import os
import zlib

from tools.core.errors import DataError, UsageError
from tools.core.fileio import atomic_path
from tools.datasets.readers.folder import folder_classes, folder_images
from tools.train.run_files import SPLIT_DIR

import numpy as np

HEADER = ["image", "label"]


def check_fractions(val_fraction, test_fraction):
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= value < 1:
            raise UsageError(f"'{name}' must be in [0, 1), got {value}")
    if val_fraction <= 0:
        raise UsageError("'val_fraction' must be > 0")
    if val_fraction + test_fraction >= 1:
        raise UsageError(f"val_fraction + test_fraction must be < 1, got {val_fraction + test_fraction:g}")


def class_images(data_dir, class_root):
    """``{class name: [image path relative to data_dir, ...]}`` of the class folders in ``class_root``."""
    if not os.path.isdir(class_root):
        raise DataError(f"folder not found: {class_root}")
    names, folders = folder_classes(data_dir, class_root)
    if not folders:
        raise DataError(f"no class folders in {class_root}")
    paths, labels = folder_images(class_root, folders)
    if not paths:
        raise DataError(f"no images in the class folders of {class_root}")
    images = {name: [] for name in names}
    for path, label in zip(paths, labels):
        images[names[label]].append(os.path.relpath(path, data_dir))
    return images


def split_counts(n, val_fraction, test_fraction):
    """``(val, test)`` image counts of a class of ``n`` images; at least one stays for training."""
    val = round(n * val_fraction)
    test = round(n * test_fraction)
    if n >= 2:
        val = max(val, 1)
    if n >= 3 and test_fraction > 0:
        test = max(test, 1)
    while val + test > n - 1:  # keep one for training
        if test and test >= val:
            test -= 1
        else:
            val -= 1
    return val, test


def seeded_order(paths, name, seed):
    """The images ``paths`` of class ``name`` shuffled by a generator seeded with ``seed`` and the class name:
    the order every stratified split (val/test fractions, cross-validation folds) deals a class from."""
    order = np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))]).permutation(len(paths))
    ordered = sorted(paths)
    return [ordered[i] for i in order]


def stratified_split(images, val_fraction, test_fraction=0.0, seed=0):
    """``{"train": rows, "val": rows[, "test": rows]}``, rows ``(path, class name)``, each class on its own."""
    splits = {"train": [], "val": []}
    if test_fraction > 0:
        splits["test"] = []
    for name, paths in images.items():
        shuffled = seeded_order(paths, name, seed)
        val, test = split_counts(len(paths), val_fraction, test_fraction)
        splits["val"] += [(p, name) for p in shuffled[:val]]
        if test_fraction > 0:
            splits["test"] += [(p, name) for p in shuffled[val : val + test]]
        splits["train"] += [(p, name) for p in shuffled[val + test :]]
    return {split: sorted(rows) for split, rows in splits.items()}


def csv_text(rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    return buffer.getvalue()


def write_lists(out_dir, splits, overwrite=False, check_only=False):
    """Write ``<split>.csv`` files; returns the paths written. Checked first: a file that would change, or a
    stale one (``test.csv`` of an earlier split with a test part, a ``.txt`` list of a split written now), is
    refused without ``overwrite`` (and then removed). ``check_only``: the check, nothing written."""
    texts = {os.path.join(out_dir, f"{split}.csv"): csv_text(rows) for split, rows in splits.items()}
    stale = [os.path.join(out_dir, f"{split}.txt") for split in splits]
    if "test" not in splits:
        stale += [os.path.join(out_dir, f"test{ext}") for ext in (".csv", ".txt")]
    stale = [p for p in stale if os.path.exists(p)]
    changed = [p for p, text in texts.items() if _read(p) not in (None, text)]
    if (changed or stale) and not overwrite:
        what = changed[0] if changed else stale[0]
        raise DataError(f"{what} exists and holds another split; --overwrite replaces it (or use another --out_dir)")
    if check_only:
        return []
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for path, text in texts.items():
        if _read(path) != text:
            with atomic_path(path, suffix=f".{os.getpid()}.tmp") as tmp, open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            written.append(path)
    for path in stale:
        os.remove(path)
    return written


def _read(path):
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def summary(splits):
    return ", ".join(f"{split} {len(rows)}" for split, rows in splits.items())


def hold_out_val(cfg, scratch):
    """``finetune.py --val_fraction F``: split ``<data_dir>/<train_split>/`` (or ``data_dir`` itself, a
    folder of class folders) into ``<train_split>.csv`` and ``<val_split>.csv``, written to ``scratch`` for the
    data checks and the model build (nothing goes into the run folder before every check has passed), and
    point ``cfg`` at them (``dataset_format: list``, ``list_dir``); ``val_fraction`` is then 0: the split is
    done. Returns the split (``{split: rows}``, empty without val_fraction) for :func:`keep_held_out`; lists
    in the run folder that would change are refused here, before any write, without ``overwrite``."""
    if not cfg.val_fraction:
        return {}
    check_fractions(cfg.val_fraction, 0.0)
    if cfg.list_dir:
        raise UsageError("'val_fraction' makes its own list files: leave 'list_dir' unset")
    from tools.core.config import update  # MindSpore and MindCV load only when needed
    from tools.datasets.loader import known_splits

    splits = known_splits(cfg)
    if cfg.val_split in splits:
        raise UsageError(f"'val_fraction' splits a folder without a val split, but {cfg.data_dir} has split "
                         f"'{cfg.val_split}'; set val_fraction: 0 to use it")
    tree = os.path.join(cfg.data_dir, cfg.train_split)
    if not os.path.isdir(tree) and cfg.train_split in splits:
        raise UsageError(f"'val_fraction' splits class folders, but split '{cfg.train_split}' of {cfg.data_dir} is "
                         "a list or annotation file; split it with its own val list instead")
    class_root = tree if os.path.isdir(tree) else cfg.data_dir
    parts = stratified_split(class_images(cfg.data_dir, class_root), cfg.val_fraction, seed=cfg.split_seed)
    held_out = {cfg.train_split: parts["train"], cfg.val_split: parts["val"]}
    out_dir = os.path.abspath(os.path.join(cfg.ckpt_save_dir, SPLIT_DIR))
    write_lists(out_dir, held_out, overwrite=cfg.overwrite, check_only=True)
    write_lists(scratch, held_out)
    print(f"held out {cfg.val_fraction:g} of each class of {class_root} as '{cfg.val_split}' (seed {cfg.split_seed}): "
          f"{len(parts['train'])} train, {len(parts['val'])} val images; lists in {out_dir}", flush=True)
    update(cfg, "--val_fraction", dataset_format="list", list_dir=os.path.abspath(scratch), val_fraction=0.0)
    return held_out


def keep_held_out(cfg, held_out):
    """Write :func:`hold_out_val`'s split into ``<ckpt_save_dir>/split/`` once the run took its folder, and point
    ``cfg`` (so the run's config.yaml) there."""
    from tools.core.config import update

    if held_out:
        update(cfg, "--val_fraction", list_dir=os.path.abspath(os.path.join(cfg.ckpt_save_dir, SPLIT_DIR)))
        write_lists(cfg.list_dir, held_out, overwrite=cfg.overwrite)
