"""Build the multi-label demo dataset: 2x2 mosaics of the bundled Fashion-MNIST tiles labelled with the classes they
show (``tools/datasets/mosaic_data.py`` says what it writes).

Usage::

    python tools/make_mosaic_data.py --out data/fashion_mosaics [--source data/fashion_mnist] [--train 600]
        [--val 200] [--empty 0.25] [--seed 0]
"""
import os
import sys

if __package__ in (None, ""):  # python tools/x.py: the repository root, not tools/, on sys.path
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from tools.core.errors import CliParser, run_cli
from tools.datasets.mosaic_data import DEFAULT_SOURCE, make_mosaic_data


def main(argv=None):
    parser = CliParser(description="Build 2x2 Fashion-MNIST mosaics labelled with the classes they show.")
    parser.add_argument("--out", required=True, help="output folder (new or empty)")
    parser.add_argument("--source", default=DEFAULT_SOURCE, help=f"the demo data (tools/make_demo_data.py's; "
                                                                 f"{DEFAULT_SOURCE})")
    parser.add_argument("--train", type=int, default=600, help="train mosaics (600)")
    parser.add_argument("--val", type=int, default=200, help="val mosaics (200)")
    parser.add_argument("--empty", type=float, default=0.25, help="probability of an empty cell (0.25)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws (0)")
    args = parser.parse_args(argv)
    counts = make_mosaic_data(args.out, args.source, args.train, args.val, args.empty, args.seed)
    print(f"wrote {counts['train']} train and {counts['val']} val mosaics to {args.out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
