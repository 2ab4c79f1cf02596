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

``finetune.py --val_fraction F`` does the same into ``<ckpt_save_dir>/split/``
(``tools.datasets.splitting.hold_out_val``).
"""
import os
import sys

if __package__ in (None, ""):  # python tools/x.py: the repository root, not tools/, on sys.path
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from tools.core.errors import CliParser, run_cli
from tools.core.fileio import check_outside_data
from tools.datasets.splitting import check_fractions, class_images, stratified_split, summary, write_lists


def parse_args(argv):
    p = CliParser(description="Split a folder of class folders into train/val(/test) list files (CSV).")
    p.add_argument("--data_dir", required=True, help="folder whose subfolders are the classes")
    p.add_argument("--val_fraction", type=float, required=True, help="fraction of each class held out as val")
    p.add_argument("--test_fraction", type=float, default=0.0, help="fraction of each class held out as test")
    p.add_argument("--seed", type=int, default=0, help="default: 0")
    p.add_argument("--out_dir", help="where to write the list files (default: --data_dir)")
    p.add_argument("--overwrite", action="store_true", help="replace list files that would change")
    return p.parse_args(argv)


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
