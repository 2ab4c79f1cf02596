"""Building a small demo dataset in FGVC-Aircraft's raw layout from Fashion-MNIST.

Fashion-MNIST (Zalando Research, MIT license) comes from the Debian package
``dataset-fashion-mnist`` as four gzipped IDX files in ``/usr/share/datasets/fashion-mnist/``.
From it :func:`make_demo_data` writes, at the variant level only::

    <out>/images/<7-digit id>.jpg          RGB JPEG (grey replicated), --size x --size, quality 95
    <out>/images_variant_trainval.txt      "<id> <class name>", sorted by id (from the train set)
    <out>/images_variant_test.txt          "<id> <class name>", sorted by id (from the t10k set)
    <out>/variants.txt                     the 10 class names in label-index order
    <out>/README.md                        provenance, license, the command, counts

An image id is the image's position in the 70,000 images of Fashion-MNIST taken as train
(0..59999) then t10k (60000..69999), zero-padded to 7 digits; so ids are unique, the two splits
are disjoint, and every image can be traced back to its source (``image_id``). Per class
the first N images of a seeded permutation are taken, so a rebuild is deterministic.

``tools/make_demo_data.py`` is its command line.
"""
import gzip
import os
import re
import shlex
import zlib

from tools.core.errors import DataError, UsageError
from tools.core.fileio import first_line
from tools.datasets.class_names import read_names
from tools.datasets.readers.aircraft import IMAGE_EXT, IMAGES_DIR, NAMES_FILES, annotation_file

import numpy as np
from PIL import Image

DEFAULT_SOURCE = "/usr/share/datasets/fashion-mnist"
INSTALL_HINT = "apt-get update && apt-get install -y dataset-fashion-mnist"
CLASS_NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
# split of the demo -> (IDX images file, IDX labels file, id offset of its first image)
SOURCE_SPLITS = {
    "trainval": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 0),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 60000),
}
NATIVE_SIZE = 28
JPEG_QUALITY = 95
ID_DIGITS = 7
LEVEL = "variant"
_ID_JPG = re.compile(r"^\d{%d}%s$" % (ID_DIGITS, re.escape(IMAGE_EXT)))
_IDX_MAGIC = {1: 0x00000801, 3: 0x00000803}  # unsigned bytes, 1-D labels / 3-D images


def read_idx(path, ndim):
    """The array in a gzipped IDX file of unsigned bytes with ``ndim`` dimensions.

    A missing file, bad gzip data, a wrong magic number or a size that does not match the
    header is a one-line ``DataError`` naming the file.
    """
    if not os.path.isfile(path):
        raise DataError(f"Fashion-MNIST file not found: {path} (reinstall with: {INSTALL_HINT})")
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: corrupt gzip data ({first_line(err)})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: corrupt IDX file (only {len(raw)} bytes, shorter than its header)")
    magic = int.from_bytes(raw[:4], "big")
    if magic != _IDX_MAGIC[ndim]:
        raise DataError(f"{path}: corrupt IDX file (magic number 0x{magic:08x}, expected 0x{_IDX_MAGIC[ndim]:08x})")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        raise DataError(f"{path}: corrupt IDX file ({len(raw)} bytes, header {dims} needs {expected})")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_split(source, split):
    """``(images, labels)`` of a demo split (``trainval`` or ``test``) from the IDX files in ``source``."""
    images_name, labels_name, _ = SOURCE_SPLITS[split]
    images = read_idx(os.path.join(source, images_name), 3)
    labels = read_idx(os.path.join(source, labels_name), 1)
    if images.shape[1:] != (NATIVE_SIZE, NATIVE_SIZE):
        raise DataError(f"{os.path.join(source, images_name)}: images are {images.shape[1:]}, expected 28x28")
    if len(images) != len(labels):
        raise DataError(
            f"{os.path.join(source, labels_name)}: {len(labels)} labels for {len(images)} images in {images_name}"
        )
    if labels.size and labels.max() >= len(CLASS_NAMES):
        raise DataError(f"{os.path.join(source, labels_name)}: label {labels.max()} out of range 0..9")
    return images, labels


def check_source(source):
    if not os.path.isdir(source):
        raise DataError(
            f"Fashion-MNIST not found at {source}: install it with `{INSTALL_HINT}` "
            "(or pass --source DIR holding the four *-ubyte.gz files)"
        )


def image_id(split, index):
    """The 7-digit id of image ``index`` of a demo split's source IDX file."""
    return f"{SOURCE_SPLITS[split][2] + index:0{ID_DIGITS}d}"


def to_rgb_image(array, size):
    """A 28x28 grey uint8 array as an RGB ``PIL.Image`` of ``size`` x ``size`` (bicubic if resized)."""
    img = Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8))
    if size != NATIVE_SIZE:
        img = img.resize((size, size), Image.BICUBIC)
    return img.convert("RGB")


def pick(labels, per_class, rng, split):
    """Source indices: per class the first ``per_class`` of a seeded permutation, sorted."""
    order = rng.permutation(len(labels))
    chosen = []
    for c, name in enumerate(CLASS_NAMES):
        of_class = order[labels[order] == c]
        if len(of_class) < per_class:
            raise UsageError(f"--{split}_per_class {per_class}: class '{name}' has only {len(of_class)} images")
        chosen.extend(of_class[:per_class].tolist())
    return sorted(chosen)


def is_previous_output(out):
    """True if ``out`` holds a ``variants.txt`` with exactly this tool's class names."""
    path = os.path.join(out, NAMES_FILES[LEVEL])
    if not os.path.isfile(path):
        return False
    try:
        return read_names(path) == CLASS_NAMES
    except (OSError, UnicodeDecodeError, DataError):
        return False


def check_out(out):
    """Refuse an ``out`` that is a file, or a non-empty folder that is not a previous output."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out} is a file, not a folder")
    if os.path.isdir(out) and os.listdir(out) and not is_previous_output(out):
        raise UsageError(
            f"refusing to write into non-empty folder {out}: it is not an earlier output of this tool "
            f"(no {NAMES_FILES[LEVEL]} with the Fashion-MNIST class names); choose a new or empty folder"
        )


def prepare_out(out):
    """Make ``out`` ready to write: new, empty, or a previous output (its old images removed)."""
    check_out(out)
    if os.path.isdir(out) and os.listdir(out):
        images_dir = os.path.join(out, IMAGES_DIR)
        if os.path.isdir(images_dir):
            for name in os.listdir(images_dir):
                path = os.path.join(images_dir, name)
                if _ID_JPG.match(name) and os.path.isfile(path):
                    os.remove(path)
    os.makedirs(os.path.join(out, IMAGES_DIR), exist_ok=True)


def default_command(out, trainval_per_class, test_per_class, size, source, seed):
    args = ["python", "tools/make_demo_data.py", "--out", out]
    args += ["--trainval_per_class", str(trainval_per_class), "--test_per_class", str(test_per_class)]
    args += ["--size", str(size)]
    if source != DEFAULT_SOURCE:
        args += ["--source", source]
    if seed != 0:
        args += ["--seed", str(seed)]
    return " ".join(shlex.quote(a) for a in args)


def write_readme(out, command, counts, size, seed):
    total = sum(counts.values())
    lines = [
        "# Fashion-MNIST demo data (FGVC-Aircraft layout)",
        "",
        "A small subset of [Fashion-MNIST](https://github.com/zalandoresearch/fashion-mnist)",
        "(Han Xiao, Kashif Rasul, Roland Vollgraf, Zalando Research, 2017; MIT license, copyright",
        "(c) 2017 Zalando SE), read from the Debian package `dataset-fashion-mnist`",
        f"(`{DEFAULT_SOURCE}`), laid out like FGVC-Aircraft's raw data at the variant level, so the",
        "fine-tuning tools can be tried without downloading FGVC-Aircraft.",
        "",
        "Rebuilt with (from the repository root):",
        "",
        "```",
        command,
        "```",
        "",
        f"- `images/<id>.jpg`: {total} RGB JPEGs ({size}x{size}, grey replicated to 3 channels, "
        f"quality {JPEG_QUALITY})",
        f"- `images_variant_trainval.txt`: {counts['trainval']} images "
        f"({counts['trainval'] // len(CLASS_NAMES)} per class)"
        " from the Fashion-MNIST train set",
        f"- `images_variant_test.txt`: {counts['test']} images ({counts['test'] // len(CLASS_NAMES)} per class)"
        " from the Fashion-MNIST t10k set",
        f"- `variants.txt`: the {len(CLASS_NAMES)} class names in label-index order",
        "",
        "An image id is the image's position in Fashion-MNIST's 70,000 images, train (0-59999) then",
        f"t10k (60000-69999), zero-padded to {ID_DIGITS} digits. Per class the first N images of a permutation",
        f"seeded with {seed} are taken.",
        "",
    ]
    with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def make_demo_data(
    out,
    trainval_per_class=60,
    test_per_class=20,
    size=28,
    source=DEFAULT_SOURCE,
    seed=0,
    command=None,
):
    """Write the demo dataset to ``out``; return ``{"trainval": n, "test": n}`` image counts."""
    for flag, value, low in (("trainval_per_class", trainval_per_class, 1), ("test_per_class", test_per_class, 1)):
        if value < low:
            raise UsageError(f"--{flag} must be at least {low}, got {value}")
    if not 1 <= size <= 1024:
        raise UsageError(f"--size must be between 1 and 1024, got {size}")
    check_out(out)
    check_source(source)
    # read and select everything before touching ``out``: a bad source leaves it as it was
    rng = np.random.default_rng(seed)
    selected = {}
    for split, per_class in (("trainval", trainval_per_class), ("test", test_per_class)):
        images, labels = load_split(source, split)
        selected[split] = (images, labels, pick(labels, per_class, rng, split))
    prepare_out(out)

    counts = {}
    for split, (images, labels, indices) in selected.items():
        entries = []
        for index in indices:
            iid = image_id(split, index)
            to_rgb_image(images[index], size).save(
                os.path.join(out, IMAGES_DIR, iid + IMAGE_EXT), "JPEG", quality=JPEG_QUALITY, optimize=True
            )
            entries.append(f"{iid} {CLASS_NAMES[labels[index]]}\n")
        with open(annotation_file(out, LEVEL, split), "w", encoding="utf-8") as f:
            f.writelines(entries)
        counts[split] = len(entries)

    with open(os.path.join(out, NAMES_FILES[LEVEL]), "w", encoding="utf-8") as f:
        f.writelines(name + "\n" for name in CLASS_NAMES)
    if command is None:
        command = default_command(out, trainval_per_class, test_per_class, size, source, seed)
    write_readme(out, command, counts, size, seed)
    return counts
