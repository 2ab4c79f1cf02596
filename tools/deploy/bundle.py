"""The folder ``export.py --out DIR`` writes, for a machine that has Python but no MindSpore.

A bundle holds fixed names (``BUNDLE_FILES``): the exported models, their metadata (``model.classes.json``,
read by the suite's ``predict.py --onnx/--mindir`` and by the bundle's own ``predict.py``), a model card
(``README.md``), ``predict.py`` (``standalone_predict.py``, copied verbatim: onnxruntime, numpy and Pillow
only) and its ``requirements.txt`` (pinned to the project's). ``--out`` always names the bundle folder; by
default it is ``<checkpoint without .ckpt>_bundle`` beside the checkpoint. An existing folder is replaced only
when it is empty or an earlier bundle (``model.classes.json`` and nothing but bundle files): a user's files
are never deleted. Before the bundle replaces anything its ``predict.py`` is checked to prepare the parity
images exactly as the suite does (:func:`check_standalone`).
"""
import importlib.util
import json
import os
import shutil
import sys
from importlib import metadata as package_metadata

from tools.core.errors import DataError, UsageError
from tools.core.fileio import atomic_write_text, check_writable_dir
from tools.datasets.inputs import input_split
from tools.datasets.loader import build_loader
from tools.evaluate.inference import batches

import numpy as np

MODEL_NAME = "model"  # model.onnx, model.mindir, model.classes.json inside the bundle
STANDALONE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "standalone_predict.py")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STANDALONE_PACKAGES = ("onnxruntime", "numpy", "pillow")  # all the bundle's predict.py imports
SUFFIX = "_bundle"
FORMAT_NAMES = {"MINDIR": "MindIR in MindSpore", "ONNX": "ONNX in ONNX Runtime"}
INPUT_TOLERANCE = 1e-5  # predict.py's model input vs the suite's (normalised units); measured: bitwise equal
# every file a bundle may hold, in the model card's order, with what it is for (a new file: one line here)
BUNDLE_FILES = {
    "model.onnx": "the network (eval mode, logits out) for ONNX Runtime; `predict.py` runs it",
    "model.int8.onnx": "the network quantized to int8 (`export.py --quantize int8`); `predict.py --model "
                       "model.int8.onnx`",
    "model.mindir": "the network for MindSpore (the suite's `predict.py --mindir`)",
    "model.classes.json": "metadata: class names, input shape, temperature, preprocessing, parity figures",
    "predict.py": "standalone prediction: needs only onnxruntime, numpy and Pillow",
    "requirements.txt": "the packages `predict.py` needs, pinned",
    "README.md": "this model card",
}


def bundle_dir(out, ckpt_path):
    """The bundle folder: ``--out``, else ``<checkpoint without .ckpt>_bundle`` beside the checkpoint."""
    return out or os.path.splitext(ckpt_path)[0] + SUFFIX


def check_bundle_dir(path, key):
    """Refuse (UsageError, exit 2) a bundle folder ``path`` that is a file, named like a model file, or an
    existing folder holding anything but an earlier bundle; or whose place cannot be written. Writes nothing."""
    check_writable_dir(path, key)
    if not os.path.isdir(path):
        if os.path.splitext(path)[1].lower() in (".onnx", ".mindir", ".ckpt", ".json"):
            raise UsageError(f"'{key}' {path} looks like a file name: --out names the bundle folder "
                             f"({MODEL_NAME}.onnx, {MODEL_NAME}.mindir, ... are written inside it)")
        return
    names = sorted(os.listdir(path))
    foreign = [n for n in names if n not in BUNDLE_FILES or not os.path.isfile(os.path.join(path, n))]
    if foreign or (names and f"{MODEL_NAME}.classes.json" not in names):
        shown = ", ".join(foreign[:3] or names[:3]) + (" ..." if len(foreign or names) > 3 else "")
        raise UsageError(f"'{key}' {path} is a folder that holds files other than an earlier bundle's ({shown}): "
                         "name a new or empty folder (an earlier bundle is replaced whole, other files never)")


def write_standalone(folder):
    """Add ``predict.py`` and its ``requirements.txt`` to the bundle ``folder`` (when it holds an ONNX model)."""
    if os.path.isfile(os.path.join(folder, f"{MODEL_NAME}.onnx")):
        shutil.copyfile(STANDALONE, os.path.join(folder, "predict.py"))
        atomic_write_text(os.path.join(folder, "requirements.txt"), requirements_text())


def write_model_card(folder, cfg, meta, metrics_path, input_diff):
    """Add the model card ``README.md`` to the bundle ``folder`` (written last: it lists the files), with the
    validation metrics from ``metrics_path`` when validate.py wrote them for this checkpoint, and
    ``input_diff`` of :func:`check_standalone`."""
    files = sorted(os.listdir(folder)) + ["README.md"]
    metrics = validation_metrics(metrics_path, cfg.ckpt_path)
    atomic_write_text(os.path.join(folder, "README.md"), model_card(cfg, meta, metrics, files, metrics_path,
                                                                    input_diff))


def requirements_text():
    """``requirements.txt`` of the bundle: the project's pins of ``STANDALONE_PACKAGES`` (else the installed
    versions)."""
    pins = {}
    try:
        with open(os.path.join(ROOT, "requirements.txt"), encoding="utf-8") as f:
            for line in f:
                name, sep, version = line.split("#")[0].strip().partition("==")
                if sep and name.lower() in STANDALONE_PACKAGES:
                    pins[name.lower()] = f"{name}=={version}"
    except OSError:
        pass
    lines = [pins.get(name) or f"{name}=={package_metadata.version(name)}" for name in STANDALONE_PACKAGES]
    return "# what predict.py needs (no MindSpore): pip install -r requirements.txt\n" + "\n".join(lines) + "\n"


def validation_metrics(path, ckpt_path):
    """validate.py's ``metrics.json`` at ``path`` when it is of this checkpoint and newer than it, else None."""
    try:
        with open(path, encoding="utf-8") as f:
            result = json.load(f)
        fresh = os.path.getmtime(path) >= os.path.getmtime(ckpt_path)
    except (OSError, ValueError):
        return None
    same = os.path.basename(str(result.get("checkpoint", ""))) == os.path.basename(ckpt_path)
    return result if fresh and same and "top1" in result else None


def _fmt(value):
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def model_card(cfg, meta, metrics, files, metrics_path, input_diff):
    """The bundle's README.md: model, data, classes, validation metrics, preprocessing, parity, how to run."""
    pre, parity = meta["preprocessing"], meta.get("parity_check")
    size = meta["input_shape"][-1]
    lines = [f"# {meta['model']} fine-tuned on {os.path.basename(os.path.normpath(cfg.data_dir)) or cfg.data_dir}",
             "", f"Exported by the suite's `export.py` from `{os.path.basename(cfg.ckpt_path)}`.", "",
             "## Model", "",
             f"- architecture: `{meta['model']}`; input `{meta['input_shape']}` (NCHW, float32, RGB), output: "
             f"{len(meta['class_names'])} logits",
             f"- probabilities: `softmax(logits / {meta['temperature']:.4f})` (temperature: "
             f"{'fitted by validate.py --calibrate' if meta['temperature'] != 1.0 else 'not calibrated'})",
             f"- preprocessing (the suite's evaluation transforms): decode to RGB, resize the shorter side to "
             f"{pre['resize']} ({pre['interpolation']}), centre crop {pre['crop']}x{pre['crop']}, subtract mean "
             f"{[round(v, 3) for v in pre['mean']]} and divide by std {[round(v, 3) for v in pre['std']]} "
             "(0-255 scale), HWC -> CHW",
             "", "## Data", "",
             f"- data_dir `{cfg.data_dir}`" + (f" (dataset `{cfg.dataset}`)" if cfg.dataset else "")
             + f"; trained on split `{cfg.train_split}`, validated on `{cfg.val_split}`",
             f"- {len(meta['class_names'])} classes, in output order:", ""]
    lines += [f"  {i}. {name}" for i, name in enumerate(meta["class_names"])]
    lines += ["", f"## Validation ({cfg.val_split})", ""]
    if metrics:
        keys = [k for k in ("num_samples", "top1", "top5", "macro_f1", "loss", "ece") if k in metrics]
        lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys),
                  "| " + " | ".join(_fmt(metrics[k]) for k in keys) + " |", "",
                  f"From `{os.path.relpath(metrics_path, os.path.dirname(os.path.abspath(cfg.ckpt_path)))}` beside "
                  "the checkpoint (validate.py, in MindSpore)."]
    else:
        lines += [f"Not validated: validate.py has written no metrics for this checkpoint on `{cfg.val_split}` "
                  f"(`python validate.py --config CONFIG --ckpt_path {os.path.basename(cfg.ckpt_path)}`, then "
                  "export again)."]
    lines += ["", "## Parity", ""]
    if parity:
        per = parity.get("per_format", {})
        lines += [f"Before it was written, each model file was run beside the checkpoint on {len(parity['images'])} "
                  "images (tolerance: 1e-4 on probabilities, 1e-4 x the largest logit on logits):", ""]
        lines += [f"- {FORMAT_NAMES.get(fmt, fmt)}: max |logit diff| {v['max_abs_logit_diff']:.2e}, "
                  f"max |probability diff| {v['max_abs_prob_diff']:.2e}" for fmt, v in per.items()]
        if input_diff is not None:
            lines.append(f"- predict.py's model input (numpy + Pillow) vs the suite's (MindSpore) on the same images: "
                         f"max |diff| {input_diff:.2e}" + (" (bit for bit)" if input_diff == 0 else ""))
    else:
        lines += ["Not checked: export.py found no images to check on (`--parity_images`)."]
    lines += ["", "## Run it", "", "```bash", "python -m venv env && env/bin/pip install -r requirements.txt",
              "env/bin/python predict.py IMAGE_OR_FOLDER [--out predictions.csv] [--top_k 5] [--model model.onnx]",
              "```", "",
              f"Folders are read recursively (sorted, hidden files left out); images of any size are resized as "
              f"above to {size}x{size}. The CSV has the columns of the suite's predict.py: `file, true, true_prob, "
              "pred, top1, top1_prob, ...` (`true` empty: the classes are unknown). Errors are one line `error: ...`"
              " (exit 1 bad data, 2 bad usage, 130 interrupted).", "",
              "With the suite: `python predict.py --onnx model.onnx --input IMAGES` or `--mindir model.mindir`, "
              "`python validate.py --onnx model.onnx --data_dir DATA --split SPLIT`.", "", "## Files", "",
              "| file | content |", "|---|---|"]
    lines += [f"| `{name}` | {BUNDLE_FILES.get(name, '')} |" for name in BUNDLE_FILES if name in files]
    return "\n".join(lines) + "\n"


def load_standalone(folder):
    """The bundle's ``predict.py`` as a module (its metadata read from ``folder``)."""
    spec = importlib.util.spec_from_file_location("bundle_predict", os.path.join(folder, "predict.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def suite_inputs(cfg, paths, class_names):
    """The model inputs the suite's evaluation pipeline (MindCV's eval transforms) makes of ``paths``, in order."""
    loader = build_loader(cfg, input_split(cfg, paths, class_names), len(class_names), training=False, batch_size=1)
    return [images[0] for images, _ in batches(loader, output_numpy=True)]


def check_standalone(folder, cfg, paths, class_names):
    """The bundle's ``predict.py`` prepares each of ``paths`` as the suite does: returns the largest difference
    of the model inputs, or None (with a warning) when the bundle has no predict.py or it cannot reproduce the
    preprocessing. A difference above ``INPUT_TOLERANCE`` is a DataError (nothing is replaced)."""
    if not os.path.isfile(os.path.join(folder, "predict.py")):
        return None
    standalone = load_standalone(folder)
    try:
        meta = standalone.read_metadata(folder)
    except standalone.DataError as err:
        print(f"warning: the bundle's predict.py cannot run this model ({err})", file=sys.stderr)
        return None
    expected = suite_inputs(cfg, paths, class_names)
    diff = max(float(np.abs(standalone.preprocess(standalone.decode_rgb(path), meta)[0] - image).max())
               for path, image in zip(paths, expected))
    if diff > INPUT_TOLERANCE:
        raise DataError(f"the bundle's predict.py prepares images differently from the suite (max |input diff| "
                        f"{diff:.2e} on {len(paths)} images): nothing was replaced; please report it")
    print(f"bundle check: predict.py's model input = the suite's on {len(paths)} images (max |diff| {diff:.2e})")
    return diff
