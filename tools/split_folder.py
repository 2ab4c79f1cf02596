"""Split a folder of class folders (no train/val split) into list files, images untouched.

Writes ``train.csv`` and ``val.csv`` (and ``test.csv`` with ``--test_fraction``) with columns
``image,label`` into ``--out_dir`` (default ``--data_dir``): paths relative to ``--data_dir``, labels the
class names (``<data_dir>/classes.txt`` when present, else the folder names). Each class is split on its
own (stratified), shuffled by a generator seeded with ``--seed`` and the class name, so the same data and
seed give the same files, and adding a class leaves the others' split as it was. A class with at least
two images keeps one for training and gives at least one to val (three: one to test as well).

Nothing is copied or moved. Re-running with the same arguments on the same images is a no-op; when a
list file would change (other arguments, other images) nothing is written unless ``--overwrite``.

    python tools/split_folder.py --data_dir photos/ --val_fraction 0.2 [--test_fraction 0.1] [--seed 0]

``finetune.py --val_fraction F`` does the same into ``<ckpt_save_dir>/split/`` (:func:`hold_out_val`).
"""
import csv
import io
import os
import sys
import zlib

if __package__ in (None, ""):  # python tools/x.py: the repository root, not tools/, on sys.path
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from tools.core.errors import CliParser, DataError, UsageError, run_cli
from tools.core.fileio import (
    atomic_path,
    check_outside_data,
)
from tools.datasets.readers.folder import folder_classes, folder_images
from tools.train.run_files import SPLIT_DIR

import numpy as np

HEADER = ["image", "label"]


def parse_args(argv):
    p = CliParser(description="Split a folder of class folders into train/val(/test) list files (CSV).")
    p.add_argument("--data_dir", required=True, help="folder whose subfolders are the classes")
    p.add_argument("--val_fraction", type=float, required=True, help="fraction of each class held out as val")
    p.add_argument("--test_fraction", type=float, default=0.0, help="fraction of each class held out as test")
    p.add_argument("--seed", type=int, default=0, help="default: 0")
    p.add_argument("--out_dir", help="where to write the list files (default: --data_dir)")
    p.add_argument("--overwrite", action="store_true", help="replace list files that would change")
    return p.parse_args(argv)


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


def stratified_split(images, val_fraction, test_fraction=0.0, seed=0):
    """``{"train": rows, "val": rows[, "test": rows]}``, rows ``(path, class name)``, each class on its own."""
    splits = {"train": [], "val": []}
    if test_fraction > 0:
        splits["test"] = []
    for name, paths in images.items():
        order = np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))]).permutation(len(paths))
        shuffled = [sorted(paths)[i] for i in order]
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
    from tools.datasets.loader import known_splits  # tools.datasets.loader imports MindCV: only when needed

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
    cfg.dataset_format, cfg.list_dir, cfg.val_fraction = "list", os.path.abspath(scratch), 0.0
    return held_out


def keep_held_out(cfg, held_out):
    """Write :func:`hold_out_val`'s split into ``<ckpt_save_dir>/split/`` once the run took its folder, and point
    ``cfg`` (so the run's config.yaml) there."""
    if held_out:
        cfg.list_dir = os.path.abspath(os.path.join(cfg.ckpt_save_dir, SPLIT_DIR))
        write_lists(cfg.list_dir, held_out, overwrite=cfg.overwrite)


def main(argv=None):
    args = parse_args(argv)
    check_fractions(args.val_fraction, args.test_fraction)
    out_dir = args.out_dir or args.data_dir
    check_outside_data(out_dir, "--out_dir", [args.data_dir], files_only=True)  # list files only
    splits = stratified_split(class_images(args.data_dir, args.data_dir), args.val_fraction, args.test_fraction,
                              args.seed)
    written = write_lists(out_dir, splits, overwrite=args.overwrite)
    state = f"wrote {', '.join(os.path.basename(p) for p in written)}" if written else "already split: nothing written"
    print(f"{summary(splits)} images; {state} in {out_dir}")
    print("train with: --data_dir", args.data_dir, *(["--list_dir", out_dir] if args.out_dir else []),
          "--train_split train --val_split val")
    return 0


if __name__ == "__main__":
    run_cli(main)
