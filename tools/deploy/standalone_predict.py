"""Predict classes with this bundle's ONNX model, on a machine with Python and no MindSpore.

    python predict.py IMAGE_OR_FOLDER [...] [--out predictions.csv] [--top_k 5] [--model model.onnx]

Needs only onnxruntime, numpy and Pillow (``pip install -r requirements.txt`` beside this file). Folders are
read recursively in sorted order, hidden files and folders (names starting with '.') left out. Writes the CSV
of the fine-tuning suite's ``predict.py`` (columns file, true, true_prob, pred, top1, top1_prob, ...; true and
true_prob are empty: the classes of the images are unknown).

The images are prepared as the suite's evaluation does (MindCV's eval transforms in MindSpore), bit for bit:
decoded to 8-bit RGB, the shorter side resized to ``resize`` with OpenCV's fixed-point bilinear (or nearest)
interpolation, centre-cropped to ``crop`` (zero-padded where the image is smaller), normalised with ``mean``
and ``std`` (0-255 scale), NCHW; ``model.classes.json`` holds these settings, the class names and the
temperature the logits are divided by before the softmax. This file is written by the suite's export.py
(tools/deploy/standalone_predict.py there) and imports nothing of the suite.

Exit codes: 0 done, 1 bad data (an image, the model, the metadata), 2 bad usage, 130 interrupted (143 SIGTERM).
"""
import argparse
import csv
import io
import json
import math
import os
import signal
import sys
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
METADATA = "model.classes.json"
DEFAULT_MODEL = "model.onnx"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")  # as the suite's
DECODED_AS_IS = ("JPEG", "MPO", "PNG", "BMP")  # what MindSpore decodes itself; the rest the suite re-encodes as JPEG
MAX_PIXELS = 300_000_000
COEF_BITS = 11  # OpenCV's INTER_RESIZE_COEF_BITS: bilinear weights are integers out of 2048
INTERPOLATIONS = ("bilinear", "linear", "nearest")
STOP_LINE = "before finishing: nothing was written"


class UsageError(Exception):
    """Bad arguments (exit 2)."""

    exit_code = 2


class DataError(Exception):
    """A bad image, model or metadata file (exit 1)."""

    exit_code = 1


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one-line UsageErrors, not a usage dump."""

    def error(self, message):
        raise UsageError(message)


def parse_args(argv):
    p = Parser(description="Predict the classes of images with this bundle's ONNX model.", allow_abbrev=False)
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files and/or folders (recursive)")
    p.add_argument("--out", default="predictions.csv", help="predictions CSV (default: predictions.csv here)")
    p.add_argument("--top_k", "--topk", type=int, default=5, dest="top_k",
                   help="classes listed per image (capped at the class count; default 5)")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"ONNX file, looked up in the bundle folder first (default {DEFAULT_MODEL})")
    args = p.parse_args(argv)
    if args.top_k < 1:
        raise UsageError(f"'top_k' must be > 0, got {args.top_k}")
    return args


# ---- the suite's evaluation preprocessing, without MindSpore ------------------------------------

def read_metadata(folder=HERE):
    """The bundle's metadata (class names, input shape, temperature, preprocessing), checked."""
    path = os.path.join(folder, METADATA)
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
        pre = meta["preprocessing"]
        checked = {"class_names": [str(c) for c in meta["class_names"]], "input_shape": list(meta["input_shape"]),
                   "temperature": float(meta.get("temperature") or 1.0), "resize": int(pre["resize"]),
                   "crop": int(pre["crop"]), "interpolation": str(pre["interpolation"]).lower(),
                   "mean": [float(v) for v in pre["mean"]], "std": [float(v) for v in pre["std"]]}
    except FileNotFoundError:
        raise DataError(f"metadata not found: {path} (copy the whole bundle folder)") from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"cannot read {path} ({err.__class__.__name__}: {err}): export the bundle again") from None
    if meta.get("task", "single") != "single":
        raise DataError(f"{path}: a {meta['task']} model: this script answers one class per image; use the suite's "
                        "predict.py --onnx")
    if checked["interpolation"] not in INTERPOLATIONS:
        raise DataError(f"{path}: interpolation '{checked['interpolation']}' is not reproduced by this script "
                        f"(only {', '.join(INTERPOLATIONS)}); use the suite's predict.py --onnx")
    return checked


def resized_size(height, width, size):
    """``(height, width)`` with the shorter side ``size`` and the other scaled (float32, rounded down), as
    MindSpore's ``vision.Resize(size)``."""
    if height < width:
        return size, int(math.floor(np.float32(width) / np.float32(height) * np.float32(size)))
    return int(math.floor(np.float32(height) / np.float32(width) * np.float32(size))), size


def _linear_taps(src, dst, clamp):
    """Source index and the two integer weights (out of 2048) of each output position: half-pixel centres
    computed in float, weights rounded as OpenCV's ``resize`` does; ``clamp``: OpenCV's horizontal border
    rule (weights of positions beyond the edges are 1, 0 on the edge pixel; vertically the rows are clamped)."""
    position = ((np.arange(dst) + 0.5) * (1.0 / (dst / src)) - 0.5).astype(np.float32)
    index = np.floor(position).astype(np.int64)
    frac = position - index.astype(np.float32)
    if clamp:
        frac[(index < 0) | (index >= src - 1)] = 0
        index = np.clip(index, 0, src - 1)
    one = np.float32(1 << COEF_BITS)
    return index, np.rint((np.float32(1) - frac) * one).astype(np.int32), np.rint(frac * one).astype(np.int32)


def resize_bilinear(image, height, width):
    """``cv2.resize(image, (width, height), interpolation=INTER_LINEAR)`` of an ``(H, W, C)`` uint8 image, bit
    for bit: a horizontal pass in integers, a vertical one with OpenCV's rounding; an exact halving of both
    sides is OpenCV's 2x2 mean (its fast area path)."""
    src_h, src_w = image.shape[:2]
    if (src_h, src_w) == (height, width):
        return image.copy()
    if (src_h, src_w) == (2 * height, 2 * width):
        pixels = image.astype(np.int32)
        return ((pixels[0::2, 0::2] + pixels[0::2, 1::2] + pixels[1::2, 0::2] + pixels[1::2, 1::2] + 2) >> 2
                ).astype(np.uint8)
    ys, b0, b1 = _linear_taps(src_h, height, clamp=False)
    used, where = np.unique(np.clip(np.concatenate([ys, ys + 1]), 0, src_h - 1), return_inverse=True)
    pixels = image[used].astype(np.int32)  # only the source rows the output reads (a photo shrunk: a few hundred)
    xs, a0, a1 = _linear_taps(src_w, width, clamp=True)
    rows = pixels[:, xs] * a0[None, :, None] + pixels[:, np.minimum(xs + 1, src_w - 1)] * a1[None, :, None]
    top, bottom = rows[where[:height]], rows[where[height:]]
    out = (((b0[:, None, None] * (top >> 4)) >> 16) + ((b1[:, None, None] * (bottom >> 4)) >> 16) + 2) >> 2
    return np.clip(out, 0, 255).astype(np.uint8)


def resize_nearest(image, height, width):
    """``cv2.resize(..., interpolation=INTER_NEAREST)``: source index ``floor(i * src / dst)``."""
    src_h, src_w = image.shape[:2]
    ys = np.minimum(np.floor(np.arange(height) * (1.0 / (height / src_h))).astype(np.int64), src_h - 1)
    xs = np.minimum(np.floor(np.arange(width) * (1.0 / (width / src_w))).astype(np.int64), src_w - 1)
    return image[ys][:, xs]


def center_crop(image, size):
    """The centre ``size`` x ``size`` (offsets rounded down), zero-padded where the image is smaller, as
    MindSpore's ``vision.CenterCrop``."""
    out = np.zeros((size, size) + image.shape[2:], image.dtype)
    height, width = image.shape[:2]
    top, left = (height - size) // 2, (width - size) // 2
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + size, height), min(left + size, width)
    out[y0 - top:y1 - top, x0 - left:x1 - left] = image[y0:y1, x0:x1]
    return out


def preprocess(rgb, meta):
    """An ``(H, W, 3)`` uint8 RGB image -> the model's ``(1, 3, crop, crop)`` float32 input."""
    height, width = resized_size(rgb.shape[0], rgb.shape[1], meta["resize"])
    resize = resize_nearest if meta["interpolation"] == "nearest" else resize_bilinear
    image = center_crop(resize(rgb, height, width), meta["crop"]).astype(np.float32)
    image = (image - np.float32(meta["mean"])) / np.float32(meta["std"])
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None])


def decode_rgb(path):
    """The image file as 8-bit RGB, the pixels MindSpore's ``vision.Decode`` gives the suite: JPEG, PNG and BMP
    decoded (16-bit grey keeps its top 8 bits), other formats re-encoded as a JPEG (quality 95, 4:4:4) first,
    as the suite feeds them. Raises DataError with the reason when it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's EXIF / large-image warnings are not errors
            with open(path, "rb") as f:
                data = f.read()
            if not data:
                raise DataError("empty file (0 bytes)")
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                if image.format not in DECODED_AS_IS:
                    buffer = io.BytesIO()
                    _eight_bit_rgb(image).save(buffer, "JPEG", quality=95, subsampling=0)
                    with Image.open(buffer) as jpeg:
                        return np.asarray(jpeg.convert("RGB"))
                return np.asarray(_eight_bit_rgb(image))
    except Image.DecompressionBombError:
        raise DataError(f"larger than {MAX_PIXELS // 10**6} megapixels") from None
    except UnidentifiedImageError:
        raise DataError("not an image") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise DataError(f"corrupt or truncated image ({err})") from None


def _eight_bit_rgb(image):
    """RGB of a Pillow image; 16-bit grey keeps its top 8 bits (OpenCV's rule, not Pillow's clipping)."""
    from PIL import Image

    if image.mode == "I" or image.mode.startswith("I;16"):
        image = Image.fromarray((np.asarray(image) >> 8).clip(0, 255).astype(np.uint8))
    return image.convert("RGB")


# ---- inputs, model, outputs ------------------------------------------------------------------------

def find_images(inputs):
    """Files named in ``inputs`` (whatever their extension) and the image files under its folders (recursive,
    sorted, hidden names left out), in the order given."""
    found = []
    for path in inputs:
        if os.path.isfile(path):
            found.append(path)
        elif os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found += [os.path.join(root, name) for name in sorted(files)
                          if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")]
        else:
            raise DataError(f"input not found: {path}")
    if not found:
        raise DataError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {', '.join(inputs)}")
    return found


def check_output_file(path):
    """Refuse (UsageError) an ``--out`` that is a folder or whose folder cannot be created or written."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        raise UsageError(f"'out' {path} is a folder; name a file")
    existing = os.path.dirname(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UsageError(f"'out' {path} is under a file ({existing})")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"'out' {path} cannot be written ({existing}: permission denied)")


def model_path(name):
    """``--model``: a file of the bundle folder when there is one of that name, else the path as given."""
    inside = os.path.join(HERE, name)
    path = inside if os.path.isfile(inside) else name
    if not os.path.isfile(path):
        raise DataError(f"ONNX model not found: {name} (looked in {HERE} and here)")
    return path


def open_session(path, input_shape):
    """An ONNX Runtime session on CPU over the model file; one-line errors when it cannot be loaded."""
    try:
        import onnxruntime
    except ImportError:
        raise DataError("onnxruntime is not installed: pip install -r "
                        f"{os.path.join(HERE, 'requirements.txt')}") from None
    try:
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as err:  # ONNX Runtime's exception classes derive from Exception alone
        message = next((line.strip() for line in str(err).splitlines() if line.strip()), err.__class__.__name__)
        raise DataError(f"cannot load ONNX {path}: {message}") from None
    shape = session.get_inputs()[0].shape
    if len(shape) != 4 or any(isinstance(a, int) and a != b for a, b in zip(shape[1:], input_shape[1:])):
        raise DataError(f"{path} takes inputs of shape {shape}, not the metadata's {input_shape}: export again")
    return session


def softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def predict(paths, meta, session):
    """``(paths kept, probabilities)``: an unreadable image is skipped with a warning naming it, as in the
    suite; none readable is a DataError."""
    input_name, kept, logits, bad = session.get_inputs()[0].name, [], [], []
    for path in paths:
        try:
            rgb = decode_rgb(path)
        except DataError as err:
            bad.append(f"{path}: {err}")
            continue
        kept.append(path)
        logits.append(session.run(None, {input_name: preprocess(rgb, meta)})[0][0])
    if not kept:
        raise DataError(f"{bad[0]} ({len(bad)} of {len(paths)} images are unreadable: none left)")
    for line in bad:
        print(f"warning: skipping {line}", file=sys.stderr)
    if bad:
        print(f"warning: skipped {len(bad)} unreadable images; using {len(kept)} of {len(paths)}", file=sys.stderr)
    return kept, softmax(np.asarray(logits, np.float64) / meta["temperature"])


def write_csv(path, files, probs, class_names, k):
    """The suite's predictions CSV (file, true, true_prob, pred, top<i>, top<i>_prob; probabilities with 6
    decimals), written to a temporary file and renamed."""
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    header = ["file", "true", "true_prob", "pred"] + [c for i in range(1, k + 1) for c in (f"top{i}", f"top{i}_prob")]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for file, row, best in zip(files, probs, order):
        writer.writerow([file, "", "", class_names[best[0]]] +
                        [v for i in best for v in (class_names[i], f"{row[i]:.6f}")])
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(buffer.getvalue())
        os.replace(tmp, path)
    except OSError as err:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise DataError(f"cannot write {path}: {err.strerror or err}") from None


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    meta = read_metadata()
    paths = find_images(args.inputs)
    check_output_file(args.out)
    session = open_session(model_path(args.model), meta["input_shape"])
    files, probs = predict(paths, meta, session)
    write_csv(args.out, files, probs, meta["class_names"], min(args.top_k, len(meta["class_names"])))
    print(f"{len(files)} images predicted; predictions written to {args.out}")
    return 0


def _sigterm(signum, frame):
    raise KeyboardInterrupt(signum)


def run():
    """``main`` with the suite's conventions: one line on stderr and an exit code, never a traceback."""
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        code = main()
    except (UsageError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        code = err.exit_code
    except KeyboardInterrupt as err:
        sigterm = err.args == (signal.SIGTERM,)
        print(f"{'stopped by SIGTERM' if sigterm else 'interrupted'} {STOP_LINE}", file=sys.stderr)
        code = 143 if sigterm else 130
    sys.exit(code)


if __name__ == "__main__":
    run()
