"""The fine-tuning modes of the design document, side by side: each mode's finetune.py flags for a model, one
finetune.py run per mode, and the table of their measures (``tools/compare_modes.py``).

Block names follow the model's block mapping (``tools/models/blocks.py``) and "shallow layers" the model's
family (``tools/models/families.py``).
"""
import json
import os
import subprocess
import sys

from tools.core.errors import DataError
from tools.core.fileio import first_line
from tools.train.checkpoints import write_text
from tools.train.run_files import SUMMARY_FILE

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository: finetune.py
MODE_TITLES = {
    "freeze_all": "Freeze all feature layers",
    "freeze_shallow": "Freeze shallow layers",
    "full": "Full, one lr",
    "classifier_lr": "Full, classifier lr x1.2",
    "deep_lr": "Full, deep layers lr up",
    "random_init": "Full, random init",
    "freeze_then_full": "Freeze N epochs, then full",
}


def mode_overrides(model_name, freeze_epochs=1):
    """``{mode: [finetune flags]}`` for ``model_name``, following its block mapping; "freeze N epochs,
    then full" trains the head alone for ``freeze_epochs`` epochs."""
    from tools.models.blocks import feature_blocks
    from tools.models.families import head_prefix, shallow_layers
    from tools.models.mindcv_fixes import create_model_fixed

    network = create_model_fixed(model_name=model_name, num_classes=10)
    blocks = feature_blocks(network)
    weighted = [b for b in blocks if any(
        p.name.startswith(tuple(prefix + "." for prefix in b.prefixes)) for p in network.get_parameters())]
    shallow_index = shallow_layers(network, blocks, weighted)
    deep = [b.prefixes[0] for b in weighted[-3:]]
    head = head_prefix(model_name).split(".")[0]
    del network
    return {
        "freeze_all": ["--freeze_backbone", "True"],
        "freeze_shallow": ["--freeze_layers", str(shallow_index)],
        "full": [],
        "classifier_lr": ["--lr_mult", f"{head}=1.2"],
        "deep_lr": ["--lr_mult"] + [f"{name}={mult}" for name, mult in zip(deep, (1.05, 1.1, 1.15))],
        "random_init": ["--pretrained", "False", "--ckpt_path", ""],
        "freeze_then_full": ["--freeze_epochs", str(freeze_epochs)],
    }


def run_mode(config, out_dir, flags, extra):
    """Run one mode; returns its measures read back from the run's ``summary.json``."""
    cmd = [sys.executable, os.path.join(ROOT, "finetune.py"), "--config", config, *extra, *flags,
           "--ckpt_save_dir", out_dir, "--val_while_train", "True"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=os.getcwd())
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise DataError(f"mode run failed ({' '.join(flags) or 'no flags'}): {last}")
    summary = read_summary(out_dir)
    best = summary["best_metrics"]
    if not best:
        raise DataError(f"mode run ({' '.join(flags) or 'no flags'}) validated no epoch: {out_dir}")
    return {"top1": best.get("top1"), "top5": best.get("top5"), "trainable": summary.get("trainable_params"),
            "sec_per_epoch": summary["sec_per_epoch"]}


def read_summary(out_dir):
    """The ``summary.json`` a finished run wrote into ``out_dir``."""
    path = os.path.join(out_dir, SUMMARY_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read the run summary {path}: {first_line(err)}") from None


def format_tables(results):
    """Markdown and CSV texts: one column per mode (document order), one row per measure."""
    modes = list(results)
    measures = [("Top-1", lambda r: f"{100 * r['top1']:.2f}%"),
                ("Top-5", lambda r: "-" if r["top5"] is None else f"{100 * r['top5']:.2f}%"),
                ("Trainable params", lambda r: f"{r['trainable']:,}" if r["trainable"] is not None else "-"),
                ("Seconds / epoch", lambda r: f"{r['sec_per_epoch']:.1f}")]
    header = ["", *[MODE_TITLES[m] for m in modes]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join([name] + [fmt(results[m]) for m in modes]) + " |" for name, fmt in measures]
    csv_lines = [",".join(["measure", *modes])]
    csv_lines += [",".join([key] + [str(results[m][key]) for m in modes])
                  for key in ("top1", "top5", "trainable", "sec_per_epoch")]
    return "\n".join(lines) + "\n", "\n".join(csv_lines) + "\n"


def write_tables(out_dir, results):
    """``table.md`` and ``table.csv`` of :func:`format_tables` in ``out_dir``; returns the Markdown."""
    markdown, table_csv = format_tables(results)
    write_text(os.path.join(out_dir, "table.md"), markdown)
    write_text(os.path.join(out_dir, "table.csv"), table_csv)
    return markdown
