"""Evaluate a checkpoint on a dataset split over every image exactly once: Top-1, Top-5, loss,
per-class accuracy/precision/recall/F1, the most-confused pairs, calibration (ECE, reliability
diagram, optional temperature fit), an error grid, and all of it on one page, report.html.

    python validate.py --config configs/demo.yaml --ckpt_path runs/demo/mobilenet_v2_100_best.ckpt
    python validate.py --onnx runs/demo/bundle/model.onnx --data_dir data/fashion_mnist --split test   # ONNX Runtime
"""
import functools
import gc
import os

from tools.core import stop_signals

if __name__ == "__main__":  # before MindSpore starts threads: Ctrl-C and SIGTERM stop at once, in one line
    stop_signals.route_to_main_thread("before finishing: nothing was written")

from tools.analysis import ood
from tools.core import runtime
from tools.core.config import BOOL, FLOAT, INT, STR, parse_config, update
from tools.core.errors import UsageError, run_cli
from tools.core.fileio import atomic_folder, check_output_file, check_outside_data, check_writable_dir, data_folders
from tools.datasets.inputs import find_images, input_split
from tools.datasets.loader import build_loader, open_split, resolve_num_classes, second_pass
from tools.datasets.readers.folder import check_data_dir
from tools.evaluate import calibration, exported, metrics
from tools.evaluate.grad_cam import explain_classes, explainable
from tools.evaluate.tta import tta_mode, view_logits
from tools.models.factory import check_task, checkpoint_network, class_names_of, read_checkpoint
from tools.report import evaluation as reports
from tools.report import multilabel_report
from tools.report import page as report_page
from tools.report.explanations import plot_error_heatmaps
from tools.train import tasks
from tools.train.checkpoints import write_json
from tools.train.run_files import CURVES_FILE

import numpy as np

HEATMAPS_FIGURE = "error_heatmaps.png"
HEATMAP_ROWS = 8  # worst-loss errors shown with Grad-CAM (plus one per most-confused pair)

EXTRA = {"Validation": [
    ("split", "", STR, "split to evaluate; empty = val_split"),
    ("onnx", "", STR, "evaluate this ONNX file written by export.py in ONNX Runtime instead of ckpt_path (its "
                      "metadata gives the preprocessing, class names and temperature: no --config needed)"),
    ("out", "", STR, "also write the metrics as JSON to this file"),
    ("report_dir", "", STR, "folder for the reports and report.html; empty = "
                            "<checkpoint folder>/report_<checkpoint name>_<split>[_<tta>]"),
    ("tta", "none", tta_mode, "test-time augmentation: none, or hflip (mean probability of the image and its "
                              "mirror image)"),
    ("calibrate", False, BOOL, "fit a temperature on this split and store it in <checkpoint>.calibration.json "
                               "(used by predict.py and export.py)"),
    ("grid_size", 16, INT, "at most this many images in error_grid.png (highest loss first)"),
    ("top_confused", 5, INT, "print this many most-confused pairs (most_confused.csv has them all)"),
    ("ood_dir", "", STR, "folder of images unlike the classes: score them and the split (max softmax probability, "
                         "energy), report AUROC and FPR at 95% TPR, fit the 'unknown' threshold (predict.py "
                         "--min_prob auto) and store it in <checkpoint>.ood.json"),
    ("ood_tpr", 0.95, FLOAT, "the fitted 'unknown' threshold keeps this share of the split's images"),
    ("tune_thresholds", False, BOOL, "task: multilabel: fit one threshold per class (best F1) on this split and "
                                     "store them in <checkpoint>.thresholds.json (used by predict.py and export.py)"),
]}


def default_report_dir(ckpt_path, split, tta):
    """One folder per checkpoint, split and TTA mode, beside the checkpoint: runs never clobber each other."""
    stem = os.path.splitext(os.path.basename(ckpt_path))[0]
    name = f"report_{stem}_{split.replace(os.sep, '_')}" + ("" if tta == "none" else f"_{tta}")
    return os.path.join(os.path.dirname(os.path.abspath(ckpt_path)), name)


def calibrate(cfg, views, labels, split, result, stored):
    """The temperature to report with (fitted now with ``--calibrate``, else ``stored``, else None);
    adds the calibrated loss and ECE to ``result``."""
    if cfg.calibrate:
        temperature = calibration.fit_temperature(views, labels)
        probs = calibration.probabilities(views, temperature)
        details = {"split": split, "tta": cfg.tta, "num_samples": int(len(labels)),
                   "nll_before": result["loss"], "nll_after": calibration.nll(views, labels, temperature),
                   "ece_before": result["ece"], "ece_after": calibration.expected_calibration_error(probs, labels)}
        path = calibration.save_temperature(cfg.ckpt_path, temperature, details)
        if not 1.01 * calibration.TEMPERATURE_RANGE[0] < temperature < 0.99 * calibration.TEMPERATURE_RANGE[1]:
            print(f"note: the temperature is at the edge of its range {calibration.TEMPERATURE_RANGE}: on this split "
                  "the model's confidence says little about being right (or the split is too small)")
        print(f"temperature {temperature:.4f} fitted on {split}: NLL {details['nll_before']:.4f} -> "
              f"{details['nll_after']:.4f}, ECE {details['ece_before']:.4f} -> {details['ece_after']:.4f}; "
              f"written to {path}")
    else:
        temperature = stored
    if temperature is not None:
        probs = calibration.probabilities(views, temperature)
        result.update(temperature=temperature, loss_calibrated=calibration.nll(views, labels, temperature),
                      ece_calibrated=calibration.expected_calibration_error(probs, labels))
    return temperature


def where_it_looked(cfg, network, data, probs, labels, matrix):
    """Grad-CAM rows (:func:`tools.report.explanations.plot_error_heatmaps`) of the worst-loss errors and of
    the worst image of each of the ``top_confused`` most-confused pairs; None for an ONNX file or a model
    the families table does not know."""
    if cfg.onnx or not explainable(network):
        return None
    chosen = list(reports.highest_loss_errors(probs, labels, HEATMAP_ROWS))
    preds = probs.argmax(axis=1)
    for true, pred in metrics.confused_indices(matrix)[:cfg.top_confused]:
        pair = np.nonzero((labels == true) & (preds == pred))[0]
        worst = int(pair[np.argmin(probs[pair, true])])
        chosen += [] if worst in chosen else [worst]
    if not chosen:
        return None
    loader = build_loader(cfg, second_pass(cfg, data, chosen), len(data.class_names), training=False)
    names = data.class_names
    pairs = explain_classes(network, cfg.model, loader, [[preds[i], labels[i]] for i in chosen], len(names),
                            cfg.mean, cfg.std)
    return [(data.paths[i], names[preds[i]], probs[i, preds[i]], names[labels[i]], probs[i, labels[i]], view, maps)
            for i, (view, maps) in zip(chosen, pairs)]


def write_reports(cfg, report_dir, result, matrix, views, labels, data, temperature, looked=None, ood_scored=None):
    """Tables, figures, metrics.json and report.html in ``report_dir``, replaced as a whole."""
    with atomic_folder(report_dir) as tmp:
        pairs, drawn = _write_report_files(cfg, tmp, result, matrix, views, labels, data, temperature, looked,
                                           ood_scored)
    print(f"reports written to {report_dir}: report.html, metrics.json, per_class.csv, most_confused.csv, "
          f"confusion_matrix.csv/.png, reliability.png" + (", error_grid.png" if drawn else "")
          + (f", {HEATMAPS_FIGURE}" if looked else "")
          + (f", {ood.SCORES_FILE}, {ood.HISTOGRAM_FILE}" if ood_scored else ""))
    return pairs


def _write_report_files(cfg, report_dir, result, matrix, views, labels, data, temperature, looked, ood_scored):
    names = data.class_names
    join = functools.partial(os.path.join, report_dir)
    reports.write_confusion_csv(join("confusion_matrix.csv"), matrix, names)
    reports.plot_confusion_matrix(matrix, names, join("confusion_matrix.png"))
    reports.write_per_class_csv(join("per_class.csv"), matrix, names)
    pairs = metrics.most_confused(matrix, names)
    reports.write_most_confused_csv(join("most_confused.csv"), pairs)
    curves = {"as trained": _curve(calibration.probabilities(views), labels)}
    if temperature is not None:
        curves[f"temperature {temperature:.3f}"] = _curve(calibration.probabilities(views, temperature), labels)
    reports.plot_reliability(curves, join("reliability.png"))
    probs = calibration.probabilities(views, temperature or 1.0)
    errors = reports.highest_loss_errors(probs, labels, cfg.grid_size)
    figures = {"curves": os.path.join(os.path.dirname(os.path.abspath(result["checkpoint"])), CURVES_FILE),
               "confusion": join("confusion_matrix.png"), "reliability": join("reliability.png")}
    if len(errors):
        records = reports.prediction_records([data.paths[i] for i in errors], labels[errors], probs[errors], names,
                                             k=1)
        reports.plot_prediction_grid(records, join("error_grid.png"))
        figures["errors"] = join("error_grid.png")
    if looked:
        plot_error_heatmaps(looked, join(HEATMAPS_FIGURE))
        figures["heatmaps"] = join(HEATMAPS_FIGURE)
    if ood_scored:  # (split images' scores, OOD paths, their scores): what the metrics are recomputed from
        inside, ood_paths, outside = ood_scored
        ood.write_scores(join(ood.SCORES_FILE), data.paths, inside, ood_paths, outside)
        ood.plot_histograms(inside, outside, result["ood"], join(ood.HISTOGRAM_FILE))
        figures["ood"] = join(ood.HISTOGRAM_FILE)
    write_json(join("metrics.json"), result)
    report_page.evaluation_page(join(report_page.REPORT_FILE), cfg, result, pairs, figures)
    return pairs, len(errors) > 0


def _curve(probs, labels):
    return (*calibration.reliability_bins(probs, labels), calibration.expected_calibration_error(probs, labels))


def print_summary(cfg, split, result, pairs):
    top5 = "n/a (fewer than 5 classes)" if result["top5"] is None else f"{result['top5']:.4f}"
    print(f"{cfg.model} on {split} ({result['num_samples']} images, tta {cfg.tta}): top1 {result['top1']:.4f}  "
          f"top5 {top5}  loss {result['loss']:.4f}  mean per-class acc {result['mean_per_class_acc']:.4f}  "
          f"macro F1 {result['macro_f1']:.4f}  weighted F1 {result['weighted_f1']:.4f}  ECE {result['ece']:.4f}")
    for true, pred, count, share in pairs[:cfg.top_confused]:
        print(f"  confused: {true} -> {pred}: {count} images ({share:.1%} of {true})")


def ood_logits(cfg, network, batch_size, class_names):
    """``(paths, views)`` of the ``--ood_dir`` images, with the split's preprocessing and TTA."""
    ood_data = input_split(cfg, find_images([cfg.ood_dir]), class_names)
    loader = build_loader(cfg, ood_data, len(class_names), training=False, batch_size=batch_size)
    return ood_data.paths, view_logits(network, loader, batch_size, cfg.tta)[0]


def print_ood(cfg, split, found, path):
    for name in ood.SCORES:
        print(f"OOD {name}: AUROC {found[name]['auroc']:.4f}  FPR at 95% TPR {found[name]['fpr_at_95_tpr']:.4f} "
              f"({found['num_split']} images of {split} against {found['num_ood']} of {cfg.ood_dir})")
    print(f"unknown threshold: top probability below {found['min_prob']:.4f} keeps {found['split_kept']:.1%} of "
          f"{split} (--ood_tpr {cfg.ood_tpr:g}) and {found['ood_kept']:.1%} of the OOD folder; written to {path} "
          "(predict.py --min_prob auto)")


def check_values(cfg):
    if cfg.onnx and cfg.ckpt_path:
        raise UsageError("give --ckpt_path or --onnx, not both")
    if not cfg.ckpt_path and not cfg.onnx:
        raise UsageError("validate.py needs --ckpt_path (a checkpoint written by finetune.py or MindCV) or --onnx "
                         "(from export.py)")
    if cfg.onnx and cfg.calibrate:
        raise UsageError("--calibrate stores the temperature beside a checkpoint: calibrate with --ckpt_path, then "
                         "export again")
    if cfg.onnx and cfg.ood_dir:
        raise UsageError("--ood_dir stores the 'unknown' threshold beside a checkpoint: fit it with --ckpt_path, then "
                         "export again")
    ood.check_tpr(cfg.ood_tpr)
    if cfg.onnx and cfg.tune_thresholds:
        raise UsageError("--tune_thresholds stores the thresholds beside a checkpoint: tune with --ckpt_path, then "
                         "export again")
    if cfg.ood_dir:
        check_data_dir(cfg.ood_dir, "ood_dir")  # before any work: missing, a file, an archive
    if cfg.ood_dir and tasks.of(cfg).label_sets:
        raise UsageError("--ood_dir fits a threshold on the top softmax probability: not available with 'task: "
                         "multilabel'")
    if cfg.tune_thresholds and not tasks.of(cfg).label_sets:
        raise UsageError("--tune_thresholds is for multi-label models (task: multilabel)")
    for key in ("grid_size", "top_confused"):
        if getattr(cfg, key) < 0:
            raise UsageError(f"'{key}' must be >= 0, got {getattr(cfg, key)}")


def load_model(cfg, split):
    """``(network, batch size, split data, stored temperature or None)`` of the checkpoint or the ONNX file."""
    if cfg.onnx:
        meta = exported.apply_metadata(cfg, cfg.onnx, "--onnx")
        update(cfg, f"{cfg.onnx}'s metadata", model=meta["model"])
        data = open_split(cfg, split, class_names=meta["class_names"])
        return exported.load_model(cfg.onnx), meta["input_shape"][0], data, meta.get("temperature")
    params = read_checkpoint(cfg.ckpt_path)
    check_task(params, cfg)
    data = open_split(cfg, split, class_names=class_names_of(params))
    return (checkpoint_network(cfg, params, data.class_names), cfg.batch_size, data,
            calibration.stored_temperature(cfg.ckpt_path)[0])


def main(argv=None):
    cfg = parse_config(argv, "Evaluate a checkpoint (or an exported ONNX file) on a dataset split.", extra=EXTRA)
    check_values(cfg)
    model_path = cfg.onnx or cfg.ckpt_path
    check_writable_dir(cfg.report_dir or os.path.dirname(os.path.abspath(model_path)), "report_dir")
    report_page.check_report_dir(cfg.report_dir, "report_dir")
    check_output_file(cfg.out, "out")
    read = data_folders(cfg, [cfg.split or cfg.val_split]) + ([cfg.ood_dir] if cfg.ood_dir else [])  # read as images
    check_outside_data(cfg.report_dir or default_report_dir(cfg.ckpt_path, cfg.split or cfg.val_split, cfg.tta),
                       "report_dir", read)
    if cfg.out:
        check_outside_data(os.path.dirname(os.path.abspath(cfg.out)), "out", read)
    runtime.setup(cfg)
    split = cfg.split or cfg.val_split
    network, batch_size, data, stored_temperature = load_model(cfg, split)
    num_classes = resolve_num_classes(cfg, data.class_names)
    loader = build_loader(cfg, data, num_classes, training=False, batch_size=batch_size)
    views, labels = view_logits(network, loader, batch_size, cfg.tta)
    if tasks.of(cfg).label_sets:  # sigmoid outputs: mAP, F1, exact match, thresholds
        del network, loader
        gc.collect()
        multilabel_report.validate(cfg, split, model_path, data, views, labels,
                                   cfg.report_dir or default_report_dir(model_path, split, cfg.tta))
        return 0
    ood_paths, ood_views = ood_logits(cfg, network, batch_size, data.class_names) if cfg.ood_dir else (None, None)
    del loader
    probs = calibration.probabilities(views)
    result, matrix = reports.class_report(calibration.log_probabilities(views), labels, data.class_names)
    result.update(split=split, checkpoint=model_path, model=cfg.model, num_classes=num_classes, tta=cfg.tta,
                  ece=calibration.expected_calibration_error(probs, labels), ece_bins=calibration.ECE_BINS)
    temperature = calibrate(cfg, views, labels, split, result, stored_temperature)
    looked = where_it_looked(cfg, network, data, calibration.probabilities(views, temperature or 1.0), labels, matrix)
    del network
    gc.collect()
    report_dir = cfg.report_dir or default_report_dir(model_path, split, cfg.tta)
    ood_scored = None
    if cfg.ood_dir:
        result["ood"], inside, outside = ood.analyse(views, ood_views, temperature or 1.0, cfg.ood_tpr)
        ood_scored = inside, ood_paths, outside
    pairs = write_reports(cfg, report_dir, result, matrix, views, labels, data, temperature, looked, ood_scored)
    print_summary(cfg, split, result, pairs)
    if cfg.ood_dir:
        print_ood(cfg, split, result["ood"], ood.save_threshold(cfg.ckpt_path, result["ood"], split, cfg.tta,
                                                                cfg.ood_dir))
    if cfg.out:
        os.makedirs(os.path.dirname(os.path.abspath(cfg.out)), exist_ok=True)
        write_json(cfg.out, result)
        print(f"metrics written to {cfg.out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
