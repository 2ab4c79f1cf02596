"""Build the small demo dataset (FGVC-Aircraft's raw layout) from Debian's Fashion-MNIST: what it writes and how
ids and classes are chosen is told in ``tools/datasets/demo_data.py``.

Usage::

    python tools/make_demo_data.py --out data/fashion_mnist [--trainval_per_class 60]
        [--test_per_class 20] [--size 28] [--source /usr/share/datasets/fashion-mnist] [--seed 0]
"""
import os
import sys

if __package__ in (None, ""):  # python tools/x.py: the repository root, not tools/, on sys.path
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from tools.core.errors import CliParser, run_cli
from tools.datasets.demo_data import CLASS_NAMES, DEFAULT_SOURCE, NATIVE_SIZE, make_demo_data


def main(argv=None):
    parser = CliParser(description="Build a small Fashion-MNIST demo dataset in FGVC-Aircraft's raw layout.")
    parser.add_argument("--out", required=True, help="output folder (new, empty, or an earlier output)")
    parser.add_argument("--trainval_per_class", type=int, default=60, help="trainval images per class (60)")
    parser.add_argument("--test_per_class", type=int, default=20, help="test images per class (20)")
    parser.add_argument("--size", type=int, default=NATIVE_SIZE, help="image side in pixels (28: no resize)")
    parser.add_argument("--source", default=DEFAULT_SOURCE, help=f"folder of the IDX .gz files ({DEFAULT_SOURCE})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the per-class selection (0)")
    args = parser.parse_args(argv)
    counts = make_demo_data(
        args.out,
        trainval_per_class=args.trainval_per_class,
        test_per_class=args.test_per_class,
        size=args.size,
        source=args.source,
        seed=args.seed,
    )
    print(
        f"wrote {counts['trainval'] + counts['test']} images to {args.out} "
        f"(trainval {counts['trainval']}, test {counts['test']}, {len(CLASS_NAMES)} classes, {args.size}x{args.size})"
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
