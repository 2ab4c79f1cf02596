"""Export a checkpoint's network (eval mode) to MindIR and/or ONNX as a bundle folder: the models, their
metadata (class names, input shape, temperature, preprocessing), a model card and a standalone predict.py
that needs only onnxruntime, numpy and Pillow (tools/deploy/bundle.py), after checking on a few real images
that each exported file computes what the checkpoint does (the MindIR in MindSpore, the ONNX file in ONNX
Runtime) and that the bundle's predict.py prepares the images as the suite does.

    python export.py --config runs/demo/config.yaml --ckpt_path runs/demo/mobilenet_v3_small_100_best.ckpt \
        [--format both|MINDIR|ONNX] [--out runs/demo/bundle]

Cells MindSpore's ONNX converter cannot map (MobileNetV3's HSwish, ...) are rewritten for the ONNX export
(tools/evaluate/onnx_export.py).

The input shape is fixed at (1, in_channels, image_resize, image_resize): one preprocessed image
(MindCV's eval transforms of the run's config) per call. ``--out`` names the bundle folder (default
``<checkpoint without .ckpt>_bundle``); the files are written into a temporary folder that takes its place once
all of them are written and checked: a failed export replaces nothing, and a folder holding anything but an
earlier bundle is refused.
"""
import gc
import os
import sys

from tools.core import stop_signals

if __name__ == "__main__":  # before MindSpore starts threads: Ctrl-C and SIGTERM stop at once, in one line
    stop_signals.route_to_main_thread("before finishing: nothing was exported")

from tools.analysis import ood
from tools.core import runtime
from tools.core.config import INT, STR, STRS, choice, parse_config
from tools.core.errors import DataError, UsageError, run_cli
from tools.core.fileio import atomic_folder, first_line
from tools.datasets.inputs import find_images, input_split
from tools.datasets.loader import build_loader, open_split
from tools.deploy import bundle, quantize
from tools.evaluate import calibration, exported, onnx_export, thresholds
from tools.evaluate.inference import predict_logits
from tools.evaluate.metrics import softmax
from tools.models.factory import check_task, checkpoint_network, class_names_of, numbered_classes, read_checkpoint
from tools.train import tasks
from tools.train.checkpoints import write_json

import mindspore as ms
import numpy as np

EXTENSIONS = {"MINDIR": ".mindir", "ONNX": ".onnx"}
FORMATS = {"MINDIR": ["MINDIR"], "ONNX": ["ONNX"], "BOTH": ["MINDIR", "ONNX"]}
PARITY_TOLERANCE = 1e-4     # exported file vs checkpoint: largest difference of a probability, and of a logit
                            # relative to the largest logit (at least 1)


EXTRA = {"Export": [
    ("format", "BOTH", choice(*FORMATS, case=str.upper), "MINDIR, ONNX or both"),
    ("out", "", STR, "the bundle folder (model.onnx, model.mindir, model.classes.json, README.md, predict.py, "
                     "requirements.txt); empty = <checkpoint without .ckpt>_bundle beside it; an earlier bundle "
                     "there is replaced whole, a folder holding other files is refused"),
    ("parity_images", [], STRS, "images (files/folders) on which the exported files must match the checkpoint; "
                                "empty = the first parity_count images of val_split"),
    ("parity_count", 4, INT, "number of images of the parity check"),
    ("quantize", "none", choice("none", "int8"), "int8: also write <out>.int8.onnx (ONNX Runtime's static int8 "
                                                 "quantisation, calibrated on val_split) and report float vs int8 "
                                                 "Top-1, agreement, sizes and latency on val_split"),
    ("calibration_count", 64, INT, "--quantize int8: calibrate on this many val_split images, spread over the split "
                                   "(all when fewer)"),
]}


def export_one(network, sample, base, file_format, cfg):
    """Write ``base`` + extension (ONNX: with the cells rewritten that have no ONNX mapping); an export
    MindSpore cannot do is a one-line DataError naming the operator where MindSpore does."""
    path = base + EXTENSIONS[file_format]
    folder_mode = os.stat(os.path.dirname(path)).st_mode & 0o7777
    try:
        if file_format == "ONNX":
            with onnx_export.exportable(network):
                ms.export(network, sample, file_name=base, file_format=file_format)
        else:
            ms.export(network, sample, file_name=base, file_format=file_format)
    except (RuntimeError, TypeError, ValueError) as err:
        if os.path.exists(path):
            os.remove(path)
        operator = onnx_export.unsupported_operator(err)
        reason = (f"MindSpore {ms.__version__} has no ONNX mapping for the operator {operator} (and "
                  "tools/evaluate/onnx_export.py no rewrite); export --format MINDIR alone" if operator
                  else first_line(err))
        raise DataError(f"{file_format} export is not available for {cfg.model} on {cfg.device_target}: "
                        f"{reason}") from None
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)  # MindSpore leaves it owner-read-only: unreadable to a teammate, to a copy
    os.chmod(os.path.dirname(path), folder_mode)  # and makes the folder of an ONNX file 0700
    return path


def parity_images(cfg, class_names):
    """The image files of the parity check (``--parity_images``, else the start of val_split), or None with
    a warning when there are none to be had."""
    try:
        paths = find_images(cfg.parity_images) if cfg.parity_images else \
            open_split(cfg, cfg.val_split, class_names=class_names).paths
    except DataError as err:
        print(f"warning: parity check skipped ({err}); pass --parity_images FILES to check the export",
              file=sys.stderr)
        return None
    return paths[:cfg.parity_count]


def check_parity(cfg, network, exported_path, class_names):
    """Run the checkpoint's network and the exported file (a MindIR in MindSpore, an ONNX file in ONNX
    Runtime) on real images; a probability that differs by more than ``PARITY_TOLERANCE``, or a logit by more
    than that times the largest logit, is a DataError. Returns what was checked (for the metadata)."""
    paths = parity_images(cfg, class_names)
    if paths is None:
        return None
    kind, outputs = exported.format_name(exported_path), []
    for model in (network, exported.load_model(exported_path)):
        data = input_split(cfg, paths, class_names)  # a pipeline is iterated by one consumer only
        loader = build_loader(cfg, data, len(class_names), training=False, batch_size=1)
        outputs.append(predict_logits(model, loader, 1)[0])
    logit_diff = float(np.abs(outputs[0] - outputs[1]).max())
    prob_diff = float(np.abs(softmax(outputs[0].astype(np.float64)) - softmax(outputs[1].astype(np.float64))).max())
    allowed = PARITY_TOLERANCE * max(1.0, float(np.abs(outputs[0]).max()))
    if logit_diff > allowed or prob_diff > PARITY_TOLERANCE:
        raise DataError(f"the exported {kind} does not match {cfg.ckpt_path} on {len(paths)} images: logits differ "
                        f"by up to {logit_diff:.2e} (allowed {allowed:.1e}), probabilities by {prob_diff:.2e}; "
                        "nothing was replaced")
    runner = f" (ONNX Runtime {model.version})" if kind == "ONNX" else ""
    print(f"parity check: {kind}{runner} = checkpoint on {data.size} images (max |logit diff| {logit_diff:.2e}, "
          f"max |probability diff| {prob_diff:.2e})")
    return {"images": [os.path.abspath(p) for p in data.paths], "max_abs_logit_diff": logit_diff,
            "max_abs_prob_diff": prob_diff}


def combined_parity(checks):
    """The metadata's ``parity_check``: the images and the largest differences over the formats checked, and
    each format's own (``per_format``); None when nothing was checked."""
    done = {fmt: check for fmt, check in checks.items() if check}
    if not done:
        return None
    first = next(iter(done.values()))
    return {"images": first["images"],
            **{key: max(check[key] for check in done.values()) for key in ("max_abs_logit_diff", "max_abs_prob_diff")},
            "per_format": {fmt: {key: check[key] for key in ("max_abs_logit_diff", "max_abs_prob_diff")}
                           for fmt, check in done.items()}}


def main(argv=None):
    cfg = parse_config(argv, "Export a checkpoint to MindIR and/or ONNX.", extra=EXTRA)
    if not cfg.ckpt_path:
        raise UsageError("export.py needs --ckpt_path (a checkpoint written by finetune.py)")
    if cfg.parity_count < 1:
        raise UsageError(f"'parity_count' must be > 0, got {cfg.parity_count}")
    out = bundle.bundle_dir(cfg.out, cfg.ckpt_path)
    bundle.check_bundle_dir(out, "out")
    if cfg.quantize == "int8":
        quantize.check_request(cfg, FORMATS[cfg.format])
    runtime.setup(cfg)
    params = read_checkpoint(cfg.ckpt_path)
    check_task(params, cfg)
    class_names = class_names_of(params) or numbered_classes(cfg)
    temperature, source = calibration.resolve_temperature(0.0, cfg.ckpt_path)
    int8_data = quantize.validation_split(cfg, class_names) if cfg.quantize == "int8" else None  # refused if none
    network = checkpoint_network(cfg, params, class_names)
    label_thresholds = (thresholds.resolve_thresholds(cfg.ckpt_path, class_names)[0] if tasks.of(cfg).label_sets
                        else None)  # multi-label: carried in the metadata
    shape = [1, cfg.in_channels, cfg.image_resize, cfg.image_resize]
    base = os.path.join(out, bundle.MODEL_NAME)
    meta_path, checks = exported.metadata_path(base), {}
    try:
        with atomic_folder(out) as staging:  # the bundle replaces the earlier one as a whole
            staged = os.path.join(staging, bundle.MODEL_NAME)
            for file_format in FORMATS[cfg.format]:
                path = export_one(network, ms.Tensor(np.zeros(shape, np.float32)), staged, file_format, cfg)
                if None not in checks.values():  # else there are no images to check on (warned once)
                    checks[file_format] = check_parity(cfg, network, path, class_names)
            parity = combined_parity(checks)
            meta = exported.metadata(cfg, class_names, shape, temperature, parity, label_thresholds)
            if int8_data is not None:  # --quantize int8: beside the checked ONNX file, in the same staging folder
                meta["int8"] = quantize.write_int8(cfg, staged + EXTENSIONS["ONNX"], int8_data)
            write_json(exported.metadata_path(staged), {**meta, **ood.export_entry(cfg.ckpt_path)})  # --ood_dir's
            bundle.write_standalone(staging)
            input_diff = bundle.check_standalone(staging, cfg, parity["images"], class_names) if parity else None
            bundle.write_model_card(staging, cfg, meta, validation_metrics_path(cfg), input_diff)
    finally:
        del network
        gc.collect()
    for file_format in FORMATS[cfg.format]:
        print(f"exported {base + EXTENSIONS[file_format]}")
    if int8_data is not None:
        print(f"exported {quantize.int8_path(base + EXTENSIONS['ONNX'])}")
    print(f"input shape {tuple(shape)}; temperature {temperature:.4f}{f' (from {source})' if source else ''}; "
          f"class names and preprocessing in {meta_path}")
    print(f"bundle written to {out}: {', '.join(sorted(os.listdir(out)))}")
    return 0


def validation_metrics_path(cfg):
    """Where validate.py writes the metrics of this checkpoint on val_split (its default report folder)."""
    from validate import default_report_dir  # a script's helper: importing it runs no script

    return os.path.join(default_report_dir(cfg.ckpt_path, cfg.val_split, "none"), "metrics.json")


if __name__ == "__main__":
    run_cli(main)
