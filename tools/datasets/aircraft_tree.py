"""Building an ImageNet-style tree (``<out>/<split>/<class folder>/<id>.jpg``) from FGVC-Aircraft's ``data/``
folder, for ``tools/split_aircraft.py`` (and the benchmarks that need the tree).

Everything is checked before anything is written; re-running is safe (files already in place are left
alone, an interrupted run, ``move`` too, is completed); ``classes.txt`` is written before the images and
``split_info.json`` after them, so a tree of another level or class list in the same folder is refused.
"""
import errno
import filecmp
import json
import os
import shutil
from collections import Counter

from tools.core.errors import DataError, UsageError
from tools.core.fileio import atomic_write_text, check_outside_data
from tools.datasets.class_names import CLASSES_FILE, read_names, safe_dirnames
from tools.datasets.readers import aircraft as layout

MODES = ("hardlink", "symlink", "copy", "move")
INFO_FILE = "split_info.json"
TMP_NAME = ".split_aircraft.tmp"
NO_HARDLINK = {errno.EXDEV, errno.EPERM, errno.EACCES, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}



def check_dirs(data_dir, out_dir):
    """``data_dir`` must exist and ``out_dir`` must not lie inside ``images/``."""
    if not os.path.isdir(data_dir):
        raise UsageError(f"--data_dir {data_dir} is not a folder")
    check_outside_data(out_dir, "--out_dir", [os.path.join(data_dir, layout.IMAGES_DIR)])


def read_splits(data_dir, level, splits):
    """``{split: [(image_id, label), ...]}``; a split without an annotation file is a usage error."""
    entries = {}
    for split in splits:
        path = layout.annotation_file(data_dir, level, split)
        if not os.path.isfile(path):
            available = ", ".join(layout.available_splits(data_dir, level)) or "none"
            raise UsageError(f"unknown split '{split}': {path} not found; splits at level {level}: {available}")
        entries[split] = layout.read_annotation(path)
    return entries


def check_move_once(entries):
    """With ``--mode move`` an image can go to one split only."""
    seen = {}
    for split, rows in entries.items():
        for image_id, _ in rows:
            if image_id in seen:
                raise UsageError(f"image {image_id} is in both {seen[image_id]} and {split}; "
                                 "--mode move can place it only once")
            seen[image_id] = split


def read_info(out_dir):
    """The ``split_info.json`` of an earlier run, or ``{}``."""
    path = os.path.join(out_dir, INFO_FILE)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read {path}: {err}") from None


def check_previous(out_dir, level, names):
    """Refuse an ``out_dir`` holding a tree of another level or class list; return its split counts."""
    classes_path = os.path.join(out_dir, CLASSES_FILE)
    info = read_info(out_dir)
    old = read_names(classes_path) if os.path.isfile(classes_path) else names
    if old != names or info.get("level", level) != level or info.get("classes", names) != names:
        raise DataError(f"{out_dir} already holds a tree with other classes (level {info.get('level', 'unknown')}, "
                        f"see {classes_path}); use another --out_dir or remove the old tree")
    return info.get("splits", {})


def is_same(src, dst, mode):
    """Whether ``dst`` already holds ``src``: a link to it (symlink mode), else the same file or bytes."""
    if mode == "symlink":
        return os.path.islink(dst) and os.path.exists(dst) and os.path.samefile(src, dst)
    if os.path.islink(dst) or not os.path.isfile(dst):
        return False
    if os.path.samefile(src, dst):
        return True
    return os.path.getsize(src) == os.path.getsize(dst) and filecmp.cmp(src, dst, shallow=False)


def state_of(src, dst, mode):
    """'new', 'done', 'drop' (move: only the source is left to remove), 'missing' or 'clash'."""
    if not os.path.lexists(dst):
        return "new" if os.path.isfile(src) else "missing"
    if not os.path.isfile(src):
        moved = mode == "move" and os.path.isfile(dst) and not os.path.islink(dst)
        return "done" if moved else "missing"
    if not is_same(src, dst, mode):
        return "clash"
    return "drop" if mode == "move" else "done"


def plan(data_dir, out_dir, entries, names, folders, mode):
    """``[(split, image_id, src, dst, state), ...]`` for every annotation line."""
    folder_of = dict(zip(names, folders))
    jobs = []
    for split, rows in entries.items():
        for image_id, label in rows:
            src = layout.image_path(data_dir, image_id)
            dst = os.path.join(out_dir, split, folder_of[label], image_id + layout.IMAGE_EXT)
            jobs.append((split, image_id, src, dst, state_of(src, dst, mode)))
    return jobs


def line_of(path, image_id):
    """Line number of ``image_id`` in an annotation file."""
    with open(path, encoding="utf-8") as f:
        return next(n for n, line in enumerate(f, 1) if line.strip().partition(" ")[0] == image_id)


def check_jobs(jobs, data_dir, level):
    """Raise on the first missing image or clashing destination (with how many more there are)."""
    for state in ("missing", "clash"):
        bad = [job for job in jobs if job[4] == state]
        if not bad:
            continue
        split, image_id, src, dst, _ = bad[0]
        more = f" ({len(bad) - 1} more)" if len(bad) > 1 else ""
        if state == "missing":
            ann = layout.annotation_file(data_dir, level, split)
            raise DataError(f"{ann}:{line_of(ann, image_id)}: image not found: {src}{more}")
        raise DataError(f"{dst} already exists and is not {src}; remove it or use another --out_dir{more}")


def copy_atomic(src, dst, tmp):
    """Copy through ``tmp`` so an interrupted copy never leaves a partial ``dst``."""
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def place(src, dst, mode, tmp):
    """Put ``src`` at ``dst``; return the mode used (hardlink falls back to copy for good)."""
    if mode == "hardlink":
        try:
            os.link(src, dst)
            return mode
        except OSError as err:
            if err.errno not in NO_HARDLINK:
                raise
            print(f"note: cannot hardlink {src} to {dst} ({err.strerror}); copying instead")
            mode = "copy"
    if mode == "symlink":
        os.symlink(src, dst)
    elif mode == "move":
        try:
            os.rename(src, dst)
        except OSError as err:
            if err.errno != errno.EXDEV:
                raise
            copy_atomic(src, dst, tmp)
            os.remove(src)
    else:
        copy_atomic(src, dst, tmp)
    return mode


def build(out_dir, splits, names, folders, jobs, mode):
    """Create every class folder in every split, write ``classes.txt``, place the images."""
    for split in splits:
        for folder in folders:
            os.makedirs(os.path.join(out_dir, split, folder), exist_ok=True)
    atomic_write_text(os.path.join(out_dir, CLASSES_FILE), "".join(n + "\n" for n in names))
    tmp = os.path.join(out_dir, TMP_NAME)
    for _, _, src, dst, state in jobs:
        if state == "drop":
            os.remove(src)
        elif state == "new":
            mode = place(src, dst, mode, tmp)
    return mode


def print_table(names, entries):
    """Images per class (one column per split), then the totals."""
    counts = {split: Counter(label for _, label in rows) for split, rows in entries.items()}
    width = max(len(n) for n in names + ["class"])
    widths = [max(len(split), 5) for split in entries]

    def row(first, values):
        print(first.ljust(width) + "".join(f"  {v:>{w}}" for v, w in zip(values, widths)))

    row("class", list(entries))
    for name in names:
        row(name, [counts[split][name] for split in entries])
    row("total", [len(rows) for rows in entries.values()])


def make_tree(data_dir, out_dir, splits, level, mode):
    """Check, then build the tree of ``splits`` at ``level`` in ``out_dir`` and write its ``split_info.json``.
    Returns ``(class names, {split: annotation rows}, the mode used, how many images were already in place)``."""
    check_dirs(data_dir, out_dir)
    entries = read_splits(data_dir, level, splits)
    if mode == "move":
        check_move_once(entries)
    names = layout.class_names(data_dir, level, [label for rows in entries.values() for _, label in rows])
    folders = safe_dirnames(names)
    old_counts = check_previous(out_dir, level, names)
    jobs = plan(data_dir, out_dir, entries, names, folders, mode)
    check_jobs(jobs, data_dir, level)
    try:
        used = build(out_dir, list(entries), names, folders, jobs, mode)
        counts = {**old_counts, **{split: len(rows) for split, rows in entries.items()}}
        info = {"level": level, "classes": names, "folders": folders, "splits": counts}
        atomic_write_text(os.path.join(out_dir, INFO_FILE), json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    except OSError as err:
        raise DataError(f"cannot write the tree in {out_dir}: {err}") from None
    return names, entries, used, sum(job[4] != "new" for job in jobs)
