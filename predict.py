"""Predict classes with a checkpoint (or an exported MindIR or ONNX file): on a dataset split or on image
files/folders.

    python predict.py --config runs/demo/config.yaml --ckpt_path runs/demo/mobilenet_v2_100_best.ckpt \
        [--split test | --input img.jpg folder/ ...] [--topk 5] [--format csv|json] [--visualize True]
    python predict.py --mindir runs/demo/bundle/model.mindir --input photos/      # no config needed
    python predict.py --onnx runs/demo/bundle/model.onnx --input photos/          # in ONNX Runtime
"""
import gc
import hashlib
import os

from tools.core import stop_signals

if __name__ == "__main__":  # before MindSpore starts threads: Ctrl-C and SIGTERM stop at once, in one line
    stop_signals.route_to_main_thread("before finishing: nothing was written")

from tools.analysis import ood
from tools.core import runtime
from tools.core.config import BOOL, FLOAT, INT, STR, STRS, choice, parse_config, update
from tools.core.errors import UsageError, run_cli
from tools.core.fileio import check_output_file, check_outside_data, check_writable_dir, data_folders
from tools.datasets.inputs import find_images, input_split
from tools.datasets.loader import build_loader, open_split, second_pass
from tools.evaluate import calibration, exported
from tools.evaluate.grad_cam import explain_loader, last_feature_map
from tools.evaluate.tta import tta_mode, view_logits
from tools.models.factory import check_task, checkpoint_network, class_names_of, numbered_classes, read_checkpoint
from tools.report import evaluation as reports
from tools.report import multilabel_report
from tools.report.explanations import HEATMAPS_FILE, write_explanations
from tools.train import tasks

import numpy as np

EXTRA = {"Prediction": [
    ("split", "", STR, "split to predict when no --input is given; empty = val_split"),
    ("input", [], STRS, "image files and/or folders (searched recursively) to predict instead of a split"),
    ("mindir", "", STR, "run this MindIR written by export.py instead of ckpt_path (its metadata gives the "
                        "preprocessing, class names and temperature: no --config needed)"),
    ("onnx", "", STR, "run this ONNX file written by export.py in ONNX Runtime instead of ckpt_path (its metadata "
                      "is read as --mindir's: no --config needed)"),
    ("topk", 5, INT, "number of classes listed per image (capped at the class count)"),
    ("format", "csv", choice("csv", "json"), "predictions file format: csv or json"),
    ("out", "", STR, "predictions file; empty = <out_dir>/predictions_<what>.<format>"),
    ("out_dir", "", STR, "output folder; empty = the folder of the checkpoint or MindIR"),
    ("visualize", False, BOOL, "also draw a grid of images with predicted (and true) classes"),
    ("grid_size", 16, INT, "at most this many images in the grid"),
    ("grid_select", "first", choice("first", "errors"), "images in the grid: first (in order) or errors "
                                                        "(misclassified, highest loss first; needs a split)"),
    ("tta", "none", tta_mode, "test-time augmentation: none, or hflip (mean probability of the image and its "
                              "mirror image)"),
    ("temperature", 0.0, FLOAT, "divide the logits by this before the softmax; 0 = the temperature stored by "
                                "validate.py --calibrate (or in the MindIR's metadata), else 1"),
    ("min_prob", 0.0, ood.min_prob_value, "answer 'unknown' when the top probability is below this; auto = the "
                                          "threshold validate.py --ood_dir fitted (<checkpoint>.ood.json, or the "
                                          "exported model's metadata)"),
    ("explain", False, BOOL, "also write Grad-CAM heatmaps of the predicted class over each image "
                             "(<out_dir>/explain_<what>/; needs --ckpt_path)"),
]}


def open_inputs(cfg, class_names):
    """The ``--input`` images (labels unknown) or else the split, as :class:`tools.datasets.loader.SplitData`."""
    if cfg.input:
        return input_split(cfg, find_images(cfg.input), class_names)
    return open_split(cfg, cfg.split or cfg.val_split, class_names=class_names)


def exported_model(cfg):
    """``(path, flag)`` of the exported model to run instead of the checkpoint, or ``("", None)``."""
    if cfg.mindir and cfg.onnx:
        raise UsageError("give --mindir or --onnx, not both")
    return (cfg.mindir, "--mindir") if cfg.mindir else (cfg.onnx, "--onnx") if cfg.onnx else ("", None)


def check_values(cfg):
    if not cfg.ckpt_path and not exported_model(cfg)[0]:
        raise UsageError("predict.py needs --ckpt_path (a checkpoint of finetune.py) or --mindir / --onnx (from "
                         "export.py)")
    for key in ("topk", "grid_size"):
        if getattr(cfg, key) < 1:
            raise UsageError(f"'{key}' must be > 0, got {getattr(cfg, key)}")
    if cfg.temperature < 0:
        raise UsageError(f"'temperature' must be > 0 (or 0 for the stored one), got {cfg.temperature}")
    if cfg.min_prob != ood.AUTO and not 0 <= cfg.min_prob <= 1:
        raise UsageError(f"'min_prob' must be in [0, 1], got {cfg.min_prob}")
    if cfg.explain and tasks.of(cfg).label_sets:
        raise UsageError("--explain explains one predicted class per image: not available with 'task: multilabel'")
    if cfg.explain and exported_model(cfg)[0]:
        raise UsageError(f"--explain needs the checkpoint's network (gradients): give --ckpt_path, not "
                         f"{exported_model(cfg)[1]}")
    if cfg.grid_select == "errors" and cfg.input:
        raise UsageError("'--grid_select errors' needs true classes: predict a split, not --input files")


def load_model(cfg):
    """``(network, batch_size, class_names, temperature, source of the temperature)``."""
    path, flag = exported_model(cfg)
    if path:
        meta = exported.apply_metadata(cfg, path, flag)
        temperature = cfg.temperature or meta.get("temperature", 1.0)
        source = "--temperature" if cfg.temperature else exported.metadata_path(path)
        return exported.load_model(path), meta["input_shape"][0], meta["class_names"], temperature, source
    params = read_checkpoint(cfg.ckpt_path)
    check_task(params, cfg)
    class_names = class_names_of(params) or (numbered_classes(cfg) if cfg.input else None)
    temperature, source = calibration.resolve_temperature(cfg.temperature, cfg.ckpt_path)
    return params, cfg.batch_size, class_names, temperature, source


def predict(cfg):
    """Run the model over the inputs; returns ``(data, probabilities, labels)`` (labels -1 when unknown)."""
    model, batch_size, class_names, temperature, source = load_model(cfg)
    if cfg.min_prob == ood.AUTO:
        path = exported_model(cfg)[0]
        found = ood.auto_min_prob(cfg.ckpt_path, exported.read_metadata(path) if path else None, temperature, cfg.tta)
        update(cfg, "--min_prob auto", min_prob=found)
        print(f"min_prob {found:.4f} (--min_prob auto: the threshold fitted by validate.py --ood_dir)")
    data = open_inputs(cfg, class_names)
    if reports.UNKNOWN_CLASS in data.class_names and cfg.min_prob > 0:
        raise UsageError(f"a class is named '{reports.UNKNOWN_CLASS}', the answer of --min_prob: it would be ambiguous")
    network = model if exported_model(cfg)[0] else checkpoint_network(cfg, model, data.class_names)
    if cfg.explain:
        last_feature_map(network, cfg.model)  # a model it cannot explain is refused before anything is written
    loader = build_loader(cfg, data, len(data.class_names), training=False, batch_size=batch_size)
    views, labels = view_logits(network, loader, batch_size, cfg.tta)
    del network, model, loader
    gc.collect()
    if source:
        print(f"temperature {temperature:.4f} (from {source})")
    return data, tasks.of(cfg).probabilities(views, temperature), labels


def output_tag(cfg):
    """What the outputs cover, for their file names: ``<model file>_<split>`` or ``<model file>_files-<hash>``
    (the hash of the --input list), plus the TTA mode; the same command again replaces its own outputs only.
    An ONNX file's ``<model file>`` ends in ``_onnx``: by default its outputs are beside the MindIR's."""
    model = os.path.splitext(os.path.basename(cfg.mindir or cfg.onnx or cfg.ckpt_path))[0]
    model += "_onnx" if cfg.onnx else ""
    if cfg.input:
        digest = hashlib.sha1("\n".join(os.path.abspath(p) for p in cfg.input).encode()).hexdigest()[:8]
        what = f"files-{digest}"
    else:
        what = (cfg.split or cfg.val_split).replace(os.sep, "_")
    return f"{model}_{what}" + ("" if cfg.tta == "none" else f"_{cfg.tta}")


def main(argv=None):
    cfg = parse_config(argv, "Predict classes of a dataset split or of image files with a checkpoint, MindIR or ONNX.",
                       extra=EXTRA)
    check_values(cfg)
    out_dir = cfg.out_dir or os.path.dirname(os.path.abspath(exported_model(cfg)[0] or cfg.ckpt_path))
    check_writable_dir(out_dir, "out_dir")
    read = ([path for path in cfg.input if os.path.isdir(path)] if cfg.input
            else data_folders(cfg, [cfg.split or cfg.val_split]))
    check_outside_data(out_dir, "out_dir", read)  # a grid written into an --input folder is read next time
    check_output_file(cfg.out, "out")
    update(cfg, "predict.py (predictions are matched to file names by order)", eval_shuffle=False)
    runtime.setup(cfg)
    data, probs, labels = predict(cfg)
    if tasks.of(cfg).label_sets:  # label sets at per-class thresholds, a probability column per class
        return predict_label_sets(cfg, data, probs, labels, out_dir)
    records = reports.prediction_records(data.paths, labels, probs, data.class_names,
                                         min(cfg.topk, len(data.class_names)), cfg.min_prob)
    os.makedirs(out_dir, exist_ok=True)
    tag = output_tag(cfg)
    out = cfg.out or os.path.join(out_dir, f"predictions_{tag}.{cfg.format}")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    reports.write_predictions(out, records, cfg.format)
    unknown = sum(r["pred"] == reports.UNKNOWN_CLASS for r in records)
    note = f" ({unknown} unknown: top probability below {cfg.min_prob})" if cfg.min_prob > 0 else ""
    print(f"{len(records)} images predicted{note}; predictions written to {out}")
    if not cfg.input:
        preds = np.where(probs.max(axis=1) >= cfg.min_prob, probs.argmax(axis=1), -1)
        pred_txt = os.path.join(out_dir, f"pred_{tag}.txt")
        reports.write_pred_txt(pred_txt, preds, labels)
        print(f"top1 on {cfg.split or cfg.val_split}: {float(np.mean(preds == labels)):.4f}; {pred_txt} written")
    if cfg.visualize:
        draw_grid(cfg, records, probs, labels, os.path.join(out_dir, f"grid_{cfg.grid_select}_{tag}.png"))
    if cfg.explain:
        explain(cfg, data, probs.argmax(axis=1), os.path.join(out_dir, f"explain_{tag}"))
    return 0


def explain(cfg, data, classes, folder):
    """Grad-CAM of the predicted classes (``tools.evaluate.grad_cam``), one picture per image in ``folder``."""
    network = checkpoint_network(cfg, read_checkpoint(cfg.ckpt_path), data.class_names)
    loader = build_loader(cfg, second_pass(cfg, data), len(data.class_names), training=False)
    pairs = explain_loader(network, cfg.model, loader, classes, len(data.class_names), cfg.mean, cfg.std)
    count = write_explanations(folder, data.paths, classes, data.class_names, pairs)
    print(f"Grad-CAM of the predicted class: {count} pictures and {HEATMAPS_FILE} written to {folder}")


def predict_label_sets(cfg, data, probs, labels, out_dir):
    """The multi-label outputs (``tools/report/multilabel_report.py``): predictions file and, with --visualize, the
    grid of predicted sets."""
    tag = output_tag(cfg)
    out = cfg.out or os.path.join(out_dir, f"predictions_{tag}.{cfg.format}")
    for folder in (out_dir, os.path.dirname(os.path.abspath(out))):
        os.makedirs(folder, exist_ok=True)
    path, _ = exported_model(cfg)
    given = exported.read_metadata(path).get("thresholds") if path else None
    records = multilabel_report.predict(cfg, data, probs, labels, out, given)
    if cfg.visualize:
        chosen = multilabel_report.grid_records(records, cfg.grid_select, cfg.grid_size)
        if not chosen:
            print("no image with a wrong label set: no error grid drawn")
            return 0
        grid = os.path.join(out_dir, f"grid_{cfg.grid_select}_{tag}.png")
        multilabel_report.plot_prediction_grid(chosen, grid)
        print(f"prediction grid written to {grid}")
    return 0


def draw_grid(cfg, records, probs, labels, path):
    if cfg.grid_select == "first":
        chosen = records[:cfg.grid_size]
    else:
        chosen = [records[i] for i in reports.highest_loss_errors(probs, labels, cfg.grid_size)]
    if not chosen:
        print("no misclassified images: no error grid drawn")
        return
    reports.plot_prediction_grid(chosen, path)
    print(f"prediction grid written to {path}")


if __name__ == "__main__":
    run_cli(main)
