"""Writing checkpoints and result tables atomically (temporary file, then rename).

Checkpoints carry MindSpore's CRC32 (``crc_check=True``), which :func:`tools.model.read_checkpoint`
verifies, so a damaged file is refused instead of loading changed weights.
"""
import csv
import json
import os

import mindspore as ms

from tools.fileio import atomic_path, atomic_write_text
from tools.model import CLASS_NAMES_KEY, quiet_mindspore_log


def write_checkpoint(cell, tmp, append_dict):
    """``ms.save_checkpoint`` of ``cell`` to the temporary path ``tmp`` (inside :func:`atomic_path`), with a
    CRC. MindSpore writes through a temporary file of its own, left behind when the write fails (a full
    disk); it is removed here, and MindSpore's log line is silenced (the error is one line)."""
    own_tmp = os.path.splitext(tmp)[0] + ".tmp"
    try:
        with quiet_mindspore_log():
            ms.save_checkpoint(cell, tmp, append_dict=append_dict, crc_check=True)
    finally:
        if os.path.exists(own_tmp):
            os.remove(own_tmp)


def save_weights(network, path, class_names, extra=None):
    """Save model weights with the class names inside; atomic, with a CRC."""
    append = {CLASS_NAMES_KEY: json.dumps(list(class_names), ensure_ascii=False)}
    append.update(extra or {})
    with atomic_path(path, ".tmp.ckpt") as tmp:
        write_checkpoint(network, tmp, append)


write_text = atomic_write_text


RESULT_COLUMNS = ["epoch", "train_loss", "val_loss", "top1", "top5", "mean_per_class_acc", "lr", "seconds"]


def _fmt(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_results(directory, rows):
    """``results.txt`` (aligned table) and ``results.csv`` with one row per epoch."""
    table = [RESULT_COLUMNS] + [[_fmt(row.get(c)) for c in RESULT_COLUMNS] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(RESULT_COLUMNS))]
    text = "\n".join("  ".join(cell.rjust(w) for cell, w in zip(r, widths)) for r in table) + "\n"
    write_text(os.path.join(directory, "results.txt"), text)
    with atomic_path(os.path.join(directory, "results.csv")) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=RESULT_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: "" if row.get(c) is None else row.get(c) for c in RESULT_COLUMNS})


def write_json(path, data):
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
