"""Build a small demo dataset in FGVC-Aircraft's raw layout from Fashion-MNIST.

Fashion-MNIST (Zalando Research, MIT license) comes from the Debian package
``dataset-fashion-mnist`` as four gzipped IDX files in ``/usr/share/datasets/fashion-mnist/``.
From it this tool writes, at the variant level only::

    <out>/images/<7-digit id>.jpg          RGB JPEG (grey replicated), --size x --size, quality 95
    <out>/images_variant_trainval.txt      "<id> <class name>", sorted by id (from the train set)
    <out>/images_variant_test.txt          "<id> <class name>", sorted by id (from the t10k set)
    <out>/variants.txt                     the 10 class names in label-index order
    <out>/README.md                        provenance, license, the command, counts

An image id is the image's position in the 70,000 images of Fashion-MNIST taken as train
(0..59999) then t10k (60000..69999), zero-padded to 7 digits; so ids are unique, the two splits
are disjoint, and every image can be traced back to its source (``image_id``). Per class
the first N images of a seeded permutation are taken, so a rebuild is deterministic.

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
