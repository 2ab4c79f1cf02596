"""Build an ImageNet-style tree from FGVC-Aircraft's ``data/`` folder.

Writes ``<out>/<split>/<class folder>/<id>.jpg`` for each chosen split, ``<out>/classes.txt``
(the original class names in index order: line i is the class of ``folders[i]``) and
``<out>/split_info.json``. Everything is checked before anything is written. Re-running is
safe: files already in place are left alone and an interrupted run (``--mode move`` too) is
completed. ``classes.txt`` is written before the images and ``split_info.json`` after them,
so a tree of another level or class list in the same ``--out_dir`` is refused.

    python tools/split_aircraft.py --data_dir data/fgvc-aircraft-2013b/data
"""
import os
import sys

if __package__ in (None, ""):  # python tools/x.py: the repository root, not tools/, on sys.path
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from tools.core.errors import CliParser, run_cli
from tools.datasets.aircraft_tree import MODES, make_tree, print_table
from tools.datasets.readers.aircraft import NAMES_FILES


def parse_args(argv):
    p = CliParser(description="Build <out>/<split>/<class>/<id>.jpg from FGVC-Aircraft's data/ folder.")
    p.add_argument("--data_dir", required=True, help="folder with images/ and images_<level>_<split>.txt")
    p.add_argument("--out_dir", help="where to build the tree (default: --data_dir)")
    p.add_argument("--splits", nargs="+", default=["trainval", "test"], help="default: trainval test")
    p.add_argument("--level", default="variant", choices=list(NAMES_FILES), help="default: variant")
    p.add_argument("--mode", default="hardlink", choices=MODES,
                   help="default: hardlink (copy where hardlinks are not possible)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out_arg = args.out_dir or args.data_dir
    names, entries, mode, in_place = make_tree(os.path.abspath(args.data_dir), os.path.abspath(out_arg),
                                               list(dict.fromkeys(args.splits)), args.level, args.mode)
    print_table(names, entries)
    note = f"; {in_place} already in place" if in_place else ""
    written = " + ".join(f"{len(rows)} {split}" for split, rows in entries.items())
    print(f"wrote {written} images to {out_arg} ({mode}{note})")
    return 0


if __name__ == "__main__":
    run_cli(main)
