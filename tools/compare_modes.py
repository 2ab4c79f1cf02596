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
import os
import sys

if __package__ in (None, ""):  # python tools/x.py: the repository root, not tools/, on sys.path
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from tools.core.errors import CliParser, UsageError, run_cli
from tools.core.fileio import check_outside_data, check_writable_dir, data_folders
from tools.report.modes_table import MODE_TITLES, mode_overrides, run_mode, write_tables


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
    check_outside_data(args.out, "--out", data_folders(cfg, [cfg.train_split, cfg.val_split]))  # each mode's run
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
    print(write_tables(args.out, results))
    return 0


if __name__ == "__main__":
    run_cli(main)
