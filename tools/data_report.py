"""What is in a dataset before training on it: ``data_report.md`` and ``class_counts.png``.

    python tools/data_report.py --data_dir D [--config CFG] [--splits train val] [--out_dir data_report]

For every split (default: every split the layout has; a folder of class folders without splits is one
split, ``all``): images per class and split, image sizes, modes and formats, the unreadable files with
the reason, exact duplicates (same bytes, SHA-256) within and across splits, files listed in two splits,
and near-duplicates across splits (the same picture resized or re-encoded: a 64-bit DCT perceptual
hash within ``--near_threshold`` bits), which leak evaluation images into training. The data folder is
only read. Reading the layout follows the config (``dataset_format``, ``list_dir``, columns, level).
"""
import os
import sys

if __package__ in (None, ""):  # python tools/x.py: the repository root, not tools/, on sys.path
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from tools.core.errors import CliParser, UsageError, run_cli
from tools.core.fileio import check_outside_data, data_folders
from tools.report.data_report import FIGURE_FILE, REPORT_FILE, split_names, write_report


def parse_args(argv):
    p = CliParser(description="Report a dataset's classes, images, unreadable files and (near-)duplicates.")
    p.add_argument("--data_dir", required=True)
    p.add_argument("--config", default="", help="a config file: layout keys (dataset_format, list_dir, ...)")
    p.add_argument("--splits", nargs="+", help="default: every split found")
    p.add_argument("--out_dir", default="data_report", help="default: ./data_report")
    p.add_argument("--near_threshold", type=int, default=4,
                   help="near-duplicates: perceptual hashes at most this many of 63 bits apart (default 4)")
    args = p.parse_args(argv)
    if not 0 <= args.near_threshold < 63:
        raise UsageError("--near_threshold must be in [0, 63)")
    return args


def main(argv=None):
    args = parse_args(argv)
    from tools.core.config import parse_config
    from tools.datasets.readers.folder import check_data_dir

    cfg = parse_config((["--config", args.config] if args.config else []) + ["--data_dir", args.data_dir],
                       "data report")
    check_data_dir(cfg.data_dir)
    names = split_names(cfg, args.splits)
    check_outside_data(args.out_dir, "--out_dir", data_folders(cfg, names))
    text = write_report(cfg, names, args.out_dir, args.near_threshold)
    headings = [line[3:] for line in text.splitlines() if line.startswith("## ")][2:]
    print("\n".join(["; ".join(headings)] + [f"report written to {os.path.join(args.out_dir, REPORT_FILE)} "
                                             f"and {FIGURE_FILE}"]))
    return 0


if __name__ == "__main__":
    run_cli(main)
