"""The data report of ``tools/data_report.py``: ``data_report.md`` and ``class_counts.png`` of a dataset's splits.

Images per class and split, image sizes, modes and formats, the unreadable files with the reason, exact
duplicates (same bytes, SHA-256) within and across splits, files listed in two splits, and near-duplicates
across splits (the same picture resized or re-encoded: a 64-bit DCT perceptual hash within a threshold of
bits), which leak evaluation images into training. The data folder is only read.
"""
import hashlib
import os
from collections import Counter, defaultdict

from tools.core.errors import DataError
from tools.core.fileio import atomic_write_text

import numpy as np

UNSPLIT = "all"
HASH_SIDE = 32  # the image is shrunk to 32x32 grey; the 8x8 lowest DCT frequencies (less DC) make the hash
LISTED_MAX = 50  # rows per table in the report
REPORT_FILE, FIGURE_FILE = "data_report.md", "class_counts.png"


# ---- reading the splits --------------------------------------------------------------------------

def split_names(cfg, names=None):
    """``names``, else every split of the layout; none: ``data_dir`` is a folder of class folders."""
    from tools.datasets import loader as data

    return names or [s for s in data.known_splits(cfg) if _is_split(cfg, s)]


def open_splits(cfg, names):
    """``{split: ImageFiles}`` of :func:`split_names` with every unreadable file listed (skipped, never an error)."""
    from tools.core.config import update
    from tools.datasets import loader as data
    from tools.datasets.check_cache import resolve_dir
    from tools.datasets.image_files import ImageFiles
    from tools.datasets.readers.folder import folder_classes, folder_images

    update(cfg, "data_report.py, which lists every unreadable file", skip_bad_images=True, max_bad_images=10**9)
    if not names:  # a folder of class folders: one split
        class_names, folders = folder_classes(cfg.data_dir, cfg.data_dir)
        paths, labels = folder_images(cfg.data_dir, folders)
        return {UNSPLIT: _quiet(ImageFiles, paths, labels, class_names, UNSPLIT, True, 10**9,
                                resolve_dir(cfg.check_cache_dir))}
    return {name: _quiet(data.open_source, cfg, name)[1] for name in names}


def _is_split(cfg, name):
    """A name is a split unless it is a folder of images (a class folder of an unsplit dataset)."""
    from tools.datasets import layouts
    from tools.datasets import loader as data

    if data.detect_layout(cfg, name) != layouts.FOLDER.name:
        return True
    split_dir = os.path.join(cfg.data_dir, name)
    return any(os.path.isdir(os.path.join(split_dir, d)) for d in os.listdir(split_dir))


def _quiet(fn, *args):
    """Call ``fn``; the per-file skip warnings go into the report instead of the terminal."""
    import contextlib
    import io

    with contextlib.redirect_stderr(io.StringIO()):
        return fn(*args)


def describe(path):
    """``(sha256, perceptual hash or None, (width, height), mode, format)`` of one readable image."""
    from PIL import Image

    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    with Image.open(path) as image:
        size, mode, fmt = image.size, image.mode, image.format
        image.draft("L", (HASH_SIDE * 2, HASH_SIDE * 2))  # JPEG: decode at a reduced scale
        return digest, perceptual_hash(image), size, mode, fmt


_I = np.arange(HASH_SIDE)
_DCT = np.cos(np.pi * (2 * _I[None, :] + 1) * _I[:, None] / (2 * HASH_SIDE))


def perceptual_hash(image):
    """A 63-bit pHash: the 8x8 lowest DCT frequencies (DC left out) of the 32x32 grey image, above their median."""
    from PIL import Image

    grey = np.asarray(image.convert("L").resize((HASH_SIDE, HASH_SIDE), Image.BILINEAR), dtype=np.float64)
    low = (_DCT @ grey @ _DCT.T)[:8, :8].ravel()[1:]
    return np.packbits(np.append(low > np.median(low), False))


def hamming(a, b):
    """Bit distances between every hash of ``a`` (n, 8) and of ``b`` (m, 8) as an (n, m) array."""
    return np.unpackbits(a[:, None, :] ^ b[None, :, :], axis=2).sum(axis=2)


# ---- the findings --------------------------------------------------------------------------------

def gather(splits):
    """One record per (split, readable file): split, path, label name and its description."""
    from tools.datasets.check_cache import parallel_map

    items = [(split, path, _label_name(source.class_names, label))
             for split, source in splits.items() for path, label in zip(source.paths, source.labels)]
    unique = sorted({path for _, path, _ in items})
    described = dict(zip(unique, parallel_map(describe, unique)))
    return [dict(split=s, path=p, label=lab, sha=described[p][0], phash=described[p][1], size=described[p][2],
                 mode=described[p][3], format=described[p][4]) for s, p, lab in items]


def _label_name(class_names, label):
    """A class index's name, or a multi-hot label's names joined by ';' (multi-label data)."""
    if np.ndim(label):
        return ";".join(name for name, on in zip(class_names, label) if on)
    return class_names[label]


def exact_duplicates(records):
    """Groups of distinct files with the same bytes: ``[(sha, [record, ...]), ...]``, biggest first."""
    by_sha = defaultdict(list)
    for r in records:
        by_sha[r["sha"]].append(r)
    groups = [(sha, sorted(rows, key=lambda r: (r["split"], r["path"])))
              for sha, rows in by_sha.items() if len({r["path"] for r in rows}) > 1]
    return sorted(groups, key=lambda g: (-len(g[1]), g[1][0]["path"]))


def shared_files(records, splits):
    """``[(split a, split b, files in both, whether one split holds all of the other)]``."""
    paths = defaultdict(set)
    for r in records:
        paths[r["split"]].add(r["path"])
    names = list(splits)
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            both = paths[a] & paths[b]
            if both:
                out.append((a, b, len(both), both in (paths[a], paths[b])))
    return out


def near_duplicates(records, threshold):
    """Pairs of different files in different splits whose perceptual hashes are within ``threshold`` bits
    and whose bytes differ (exact copies are listed as such): ``[(distance, record a, record b), ...]``."""
    by_split = defaultdict(list)
    for r in records:
        by_split[r["split"]].append(r)
    names, pairs = list(by_split), []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            ha = np.stack([r["phash"] for r in by_split[a]])
            hb = np.stack([r["phash"] for r in by_split[b]])
            for start in range(0, len(ha), 512):
                dist = hamming(ha[start : start + 512], hb)
                for x, y in zip(*np.nonzero(dist <= threshold)):
                    ra, rb = by_split[a][start + x], by_split[b][y]
                    if ra["sha"] != rb["sha"]:
                        pairs.append((int(dist[x, y]), ra, rb))
    return sorted(pairs, key=lambda p: (p[0], p[1]["path"], p[2]["path"]))


# ---- the report ----------------------------------------------------------------------------------

def count_table(splits):
    """``(class names, {split: counts per class})`` over the union of the splits' classes, in order."""
    from tools.datasets.class_balance import class_counts

    names = []
    for source in splits.values():
        names += [n for n in source.class_names if n not in names]
    table = {}
    for split, source in splits.items():
        counts = class_counts(source.labels, len(source.class_names))
        by_name = dict(zip(source.class_names, counts))
        table[split] = np.array([by_name.get(n, 0) for n in names])
    return names, table


def markdown(data_dir, splits, records, threshold):
    from tools.datasets.class_balance import label_set_summary, summary

    names, table = count_table(splits)
    lines = [f"# Data report: {data_dir}", ""]
    lines += [f"- {label_set_summary(split, source.labels, source.class_names)}" if source.labels.ndim == 2
              else f"- {summary(split, table[split], names)}" for split, source in splits.items()]
    lines += ["", "## Images per class and split", "", "| class | " + " | ".join(splits) + " |",
              "|---|" + "---|" * len(splits)]
    lines += [f"| {_cell(n)} | " + " | ".join(str(table[s][i]) for s in splits) + " |" for i, n in enumerate(names)]
    lines += ["", "## Image sizes, modes and formats", ""]
    if records:
        widths = np.array([r["size"][0] for r in records])
        heights = np.array([r["size"][1] for r in records])
        lines += [f"- width min {widths.min()} / median {np.median(widths):g} / max {widths.max()} px; "
                  f"height min {heights.min()} / median {np.median(heights):g} / max {heights.max()} px",
                  "- modes: " + ", ".join(f"{m} {c}" for m, c in Counter(r["mode"] for r in records).most_common()),
                  "- formats: " + ", ".join(f"{m} {c}" for m, c in Counter(r["format"] for r in records).most_common())]
    bad = [(split, path, reason) for split, source in splits.items() for path, reason in source.skipped]
    lines += ["", f"## Unreadable files: {len(bad)}", ""]
    if bad:
        lines += ["| split | file | reason |", "|---|---|---|"]
        lines += [f"| {s} | {_cell(p)} | {_cell(r)} |" for s, p, r in bad[:LISTED_MAX]] + _more(bad)
    shared = shared_files(records, splits)
    lines += ["", f"## Files listed in two splits: {sum(n for _, _, n, _ in shared)}", ""]
    for a, b, n, nested in shared:
        note = " (one split holds all of the other: a union such as trainval, not a leak)" if nested else " (leak)"
        lines.append(f"- {a} and {b}: {n} files{note}")
    groups = exact_duplicates(records)
    across = [g for g in groups if len({r["split"] for r in g[1]}) > 1]
    lines += ["", f"## Exact duplicates (same bytes): {len(groups)} groups, {len(across)} across splits", ""]
    if groups:
        lines += ["| group | split | class | file |", "|---|---|---|---|"]
        for k, (_, rows) in enumerate(groups[:LISTED_MAX], 1):
            lines += [f"| {k} | {r['split']} | {_cell(r['label'])} | {_cell(r['path'])} |" for r in rows]
        lines += _more(groups)
    pairs = near_duplicates(records, threshold)
    lines += ["", f"## Near-duplicates across splits (perceptual hash within {threshold} of 63 bits): {len(pairs)}",
              "", "Candidates to look at: the same picture resized, cropped slightly or re-encoded.", ""]
    if pairs:
        lines += ["| bits apart | file | split, class | file | split, class |", "|---|---|---|---|---|"]
        lines += [f"| {d} | {_cell(a['path'])} | {a['split']}, {_cell(a['label'])} | {_cell(b['path'])} | "
                  f"{b['split']}, {_cell(b['label'])} |" for d, a, b in pairs[:LISTED_MAX]] + _more(pairs)
    return "\n".join(lines) + "\n", names, table


def _cell(text):
    return str(text).replace("|", "\\|")


def _more(items):
    return ["", f"... and {len(items) - LISTED_MAX} more"] if len(items) > LISTED_MAX else []


def plot_counts(names, table, png_path):
    """Horizontal bars per class, one colour per split."""
    import matplotlib

    matplotlib.use("Agg")
    from tools.report.evaluation import save_figure

    import matplotlib.pyplot as plt

    height = max(3.0, 0.22 * len(names) * max(1, len(table)) ** 0.5 + 1.2)
    fig, ax = plt.subplots(figsize=(9, height))
    bar = 0.8 / len(table)
    for k, (split, counts) in enumerate(table.items()):
        ax.barh(np.arange(len(names)) + k * bar, counts, height=bar, label=f"{split} ({counts.sum()})")
    ax.set_yticks(np.arange(len(names)) + bar * (len(table) - 1) / 2, names, fontsize=max(4, min(9, 400 / len(names))))
    ax.invert_yaxis()
    ax.set_xlabel("images")
    ax.set_title("Images per class")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    save_figure(fig, png_path, dpi=120)


def write_report(cfg, names, out_dir, threshold):
    """Read the splits ``names`` (none: ``data_dir`` is one split of class folders) and write ``data_report.md``
    and ``class_counts.png`` into ``out_dir``; returns the report's text."""
    splits = open_splits(cfg, names)
    text, class_names, table = markdown(cfg.data_dir, splits, gather(splits), threshold)
    try:
        os.makedirs(out_dir, exist_ok=True)
        atomic_write_text(os.path.join(out_dir, REPORT_FILE), text)
        plot_counts(class_names, table, os.path.join(out_dir, FIGURE_FILE))
    except OSError as err:
        raise DataError(f"cannot write the report into {out_dir}: {err.strerror or err}") from None
    return text
