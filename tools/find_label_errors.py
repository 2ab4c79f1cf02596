"""Label errors of a finished cross-validation, from its out-of-fold probabilities (confident learning).

    python tools/find_label_errors.py --oof CV/oof_predictions.csv [--out_dir DIR] [--grid_size 16] \
        [--write_clean_list FILE]

Writes ``label_issues.csv`` (rank, image, given label, suggested label, score, ...) and ``label_issues.png`` (the
top suspects with both labels) into ``--out_dir`` (default: the folder of ``--oof``), prints how many suspects
each class has, and with ``--write_clean_list`` a list-layout CSV (``image,label``) of every image but the
suspects, to retrain on (``--dataset_format list``). Nothing in the data is changed.
"""
import os
import sys

if __package__ in (None, ""):  # python tools/x.py: the repository root, not tools/, on sys.path
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from tools.analysis import label_errors
from tools.core.errors import CliParser, UsageError, run_cli
from tools.core.fileio import check_output_file, check_writable_dir


def parse_args(argv):
    p = CliParser(description="Label errors from a cross-validation's out-of-fold probabilities.")
    p.add_argument("--oof", required=True, help="oof_predictions.csv of tools/cross_validate.py")
    p.add_argument("--out_dir", default="", help="where label_issues.csv/.png go (default: the folder of --oof)")
    p.add_argument("--grid_size", type=int, default=16, help="suspects drawn in label_issues.png (default: 16)")
    p.add_argument("--write_clean_list", default="", help="also write this list-layout CSV without the suspects")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.grid_size < 0:
        raise UsageError(f"--grid_size must be >= 0, got {args.grid_size}")
    out_dir = args.out_dir or os.path.dirname(os.path.abspath(args.oof))
    check_writable_dir(out_dir, "--out_dir")
    check_output_file(args.write_clean_list, "--write_clean_list")
    images, labels, _, probs, names = label_errors.read_oof(args.oof)
    os.makedirs(out_dir, exist_ok=True)
    suspects, lines = label_errors.write_issues(out_dir, images, labels, probs, names, args.grid_size)
    print(f"label issues: {len(suspects)} suspects of {len(images)} images; "
          f"{os.path.join(out_dir, label_errors.ISSUES_FILE)} written")
    for line in lines:
        print(f"  {line}")
    if args.write_clean_list:
        kept = label_errors.write_clean_list(args.write_clean_list, images, labels, names, suspects)
        print(f"clean list: {kept} images (without the {len(suspects)} suspects) written to {args.write_clean_list}; "
              "train on it with --dataset_format list")
    return 0


if __name__ == "__main__":
    run_cli(main)
