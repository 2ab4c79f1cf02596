"""Run the design document's fine-tuning modes side by side and write their table.

    python tools/compare_modes.py --config CFG --out DIR [--modes ...] [--freeze_epochs N] [finetune flags ...]

Every mode runs ``finetune.py`` with the same config, data, seed and budget plus the mode's own
keys; extra flags are passed to every run. Columns follow the document's order, plus full
fine-tuning from random initialisation and "freeze N epochs, then full" (``freeze_epochs: N``, N from
``--freeze_epochs``, default a quarter of ``epoch_size``). Block names follow the model's block mapping
(``tools/models/blocks.py``) and "shallow layers" the model's family (``tools/models/families.py``): for MobileNetV2/V3
"the first 7 layers" are ``features.0``-``features.6``; for others (ResNet, ...) the first 40% of the blocks. "Deep
layers" are the last three blocks with weights (``features.13/14/15`` for MobileNetV3-small).
"""
import json
import os
import subprocess
import sys

if __package__ in (None, ""):  # python tools/x.py: the repository root, not tools/, on sys.path
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from tools.core.errors import CliParser, DataError, UsageError, run_cli
from tools.core.fileio import check_writable_dir, first_line
from tools.train.checkpoints import write_text
from tools.train.run_files import SUMMARY_FILE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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


def main(argv=None):
    parser = CliParser(description="Run the design document's fine-tuning modes and tabulate them.")
    parser.add_argument("--config", required=True, help="finetune.py config shared by all modes")
    parser.add_argument("--out", required=True, help="output folder (one sub-folder per mode + table.md/csv)")
    parser.add_argument("--modes", nargs="+", default=list(MODE_TITLES), choices=list(MODE_TITLES))
    parser.add_argument("--freeze_epochs", type=int, default=None,
                        help="N of 'Freeze N epochs, then full' (default: a quarter of epoch_size, at least 1)")
    args, extra = parser.parse_known_args(argv)
    check_writable_dir(args.out, "--out")  # before the first mode trains
    from tools.core.config import parse_config

    cfg = parse_config(["--config", args.config, *extra], "compare")
    freeze_epochs = args.freeze_epochs or max(1, cfg.epoch_size // 4)
    if not 0 < freeze_epochs < cfg.epoch_size and "freeze_then_full" in args.modes:
        raise UsageError(f"--freeze_epochs must be between 1 and epoch_size - 1 ({cfg.epoch_size - 1}), "
                         f"got {freeze_epochs}")
    overrides = mode_overrides(cfg.model, freeze_epochs)
    results = {}
    for mode in args.modes:
        print(f"[{mode}] finetune.py {' '.join(overrides[mode])}", flush=True)
        results[mode] = run_mode(args.config, os.path.join(args.out, mode), overrides[mode], extra)
        print(f"[{mode}] top1 {results[mode]['top1']:.4f}", flush=True)
    markdown, table_csv = format_tables(results)
    write_text(os.path.join(args.out, "table.md"), markdown)
    write_text(os.path.join(args.out, "table.csv"), table_csv)
    print(markdown)
    return 0


if __name__ == "__main__":
    run_cli(main)
