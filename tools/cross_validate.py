"""K-fold cross-validation of a config's training split, then the label errors its out-of-fold predictions show.

    python tools/cross_validate.py --config CFG --folds K [--seed S] [--out DIR] [--grid_size 16] [--KEY VALUE ...]

Trains K runs of ``finetune.py`` (``<out>/fold_1`` ... ``fold_K``; ``--KEY VALUE`` flags go to every fold as to
finetune.py) on stratified folds of ``train_split``, and writes into ``--out`` (default ``<ckpt_save_dir>_cv``):
``cv_summary.json/.md`` (per fold and mean +- std of Top-1, macro F1, mean per-class accuracy and loss),
``oof_predictions.csv`` (every training image's probabilities from the fold that held it out), and
``label_issues.csv/.png`` (``tools/find_label_errors.py``). The same command again continues an interrupted CV:
finished folds are not trained again. ``--seed`` decides which images go to which fold (the training seed is the
config's ``seed``). Nothing in the data is changed.
"""
import os
import sys

if __package__ in (None, ""):  # python tools/x.py: the repository root, not tools/, on sys.path
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from tools.core import stop_signals

if __name__ == "__main__":  # before MindSpore starts threads: Ctrl-C and SIGTERM stop between steps
    stop_signals.route_to_main_thread()

from tools.analysis import cross_validation as cv
from tools.analysis import label_errors
from tools.core.config import parse_config
from tools.core.errors import CliParser, UsageError, run_cli
from tools.core.fileio import check_outside_data, check_writable_dir, data_folders

import numpy as np


def parse_args(argv):
    p = CliParser(description="K-fold cross-validation of a config's training split, out-of-fold predictions and "
                              "the label errors they show. Other --KEY VALUE flags go to every fold's finetune.py.",
                  usage="%(prog)s --config CFG --folds K [--seed S] [--out DIR] [--grid_size N] [--KEY VALUE ...]")
    p.add_argument("--config", default="", help="the finetune.py config of every fold")
    p.add_argument("--folds", type=int, required=True, help="number of folds K (>= 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fold assignment (default: 0)")
    p.add_argument("--out", default="", help="folder of the fold runs and the CV's files (default: "
                                             "<ckpt_save_dir>_cv)")
    p.add_argument("--grid_size", type=int, default=16, help="suspects drawn in label_issues.png (default: 16)")
    return p.parse_known_args(argv)


def main(argv=None):
    args, rest = parse_args(argv)
    if args.grid_size < 0:
        raise UsageError(f"--grid_size must be >= 0, got {args.grid_size}")
    cv.check_flags(rest)
    config_argv = (["--config", args.config] if args.config else []) + rest
    cfg = parse_config(config_argv, "cross-validation folds")
    if args.folds < 2:
        raise UsageError(f"--folds must be >= 2, got {args.folds}")
    out = os.path.abspath(args.out or cfg.ckpt_save_dir.rstrip("/\\") + "_cv")
    check_outside_data(out, "--out", data_folders(cfg, [cfg.train_split]))
    check_writable_dir(out, "--out")
    from tools.datasets.loader import open_source  # MindSpore loads only once the flags are checked

    _, source = open_source(cfg, cfg.train_split)
    paths = [os.path.abspath(p) for p in source.paths]
    cv.check_fold_count(args.folds, source.labels, source.class_names)
    wanted = cv.plan(cfg, paths, source.labels, source.class_names, args.folds, args.seed)
    cv.check_out(out, wanted)
    cv.write_folds(out, wanted)
    print(f"cross-validation: {args.folds} folds of '{cfg.train_split}' ({len(paths)} images, "
          f"{len(source.class_names)} classes, seed {args.seed}) in {out}", flush=True)
    try:
        for fold in range(1, args.folds + 1):
            cv.train_fold(config_argv, out, fold, args.folds)
    except KeyboardInterrupt:
        print(f"cross-validation stopped: the same command continues it (finished folds are kept; {out})",
              file=sys.stderr, flush=True)
        raise
    probs, rows = cv.out_of_fold(out, wanted)
    result = cv.summary(wanted, probs, rows)
    cv.write_outputs(out, wanted, probs, result)
    suspects, lines = label_errors.write_issues(out, wanted["images"], np.array(wanted["labels"]), probs,
                                                wanted["class_names"], args.grid_size)
    for row in result["per_fold"]:
        print(f"fold {row['fold']}: top1 {row['top1']:.4f}  macro F1 {row['macro_f1']:.4f}  mean per-class acc "
              f"{row['mean_per_class_acc']:.4f}  loss {row['loss']:.4f} ({row['num_images']} images)")
    print(f"mean +- std over {args.folds} folds: {cv.mean_line(result)}")
    print(f"label issues: {len(suspects)} suspects of {len(paths)} images ({label_errors.ISSUES_FILE})")
    for line in lines:
        print(f"  {line}")
    print(f"written to {out}: {cv.SUMMARY_JSON}, {cv.SUMMARY_MD}, {cv.OOF_FILE}, {label_errors.ISSUES_FILE}"
          + (f", {label_errors.GRID_FILE}" if len(suspects) and args.grid_size else ""))
    return 0


if __name__ == "__main__":
    run_cli(main)
