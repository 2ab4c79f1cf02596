"""Evaluate a checkpoint on a dataset split over every image exactly once: Top-1, Top-5, loss,
per-class and mean per-class accuracy, and a confusion matrix (CSV + PNG).

    python validate.py --config configs/demo.yaml --ckpt_path runs/demo/mobilenet_v3_small_100_best.ckpt
"""
import gc
import os
import sys

os.environ.setdefault("GLOG_v", "3")  # MindSpore: errors only

from tools import reports, runtime  # noqa: E402
from tools.checkpoints import write_json  # noqa: E402
from tools.config import STR, parse_config  # noqa: E402
from tools.data import build_loader, open_split, resolve_num_classes  # noqa: E402
from tools.engine import predict_logits  # noqa: E402
from tools.errors import UsageError, run_cli  # noqa: E402
from tools.fileio import check_output_file, check_writable_dir  # noqa: E402
from tools.model import checkpoint_network, class_names_of, read_checkpoint  # noqa: E402

EXTRA = {"Validation": [
    ("split", "", STR, "split to evaluate; empty = val_split"),
    ("out", "", STR, "also write the metrics as JSON to this file"),
    ("report_dir", "", STR, "folder for confusion_matrix.csv/.png and per_class.csv; empty = the checkpoint's folder"),
]}


def write_reports(report_dir, matrix, class_names):
    """confusion_matrix.csv, confusion_matrix.png and per_class.csv in ``report_dir``."""
    os.makedirs(report_dir, exist_ok=True)
    reports.write_confusion_csv(os.path.join(report_dir, "confusion_matrix.csv"), matrix, class_names)
    reports.plot_confusion_matrix(matrix, class_names, os.path.join(report_dir, "confusion_matrix.png"))
    reports.write_per_class_csv(os.path.join(report_dir, "per_class.csv"), matrix, class_names)
    print(f"confusion matrix and per-class accuracy written to {report_dir}")


def main(argv=None):
    cfg = parse_config(argv, "Evaluate a checkpoint on a dataset split.", extra=EXTRA)
    if not cfg.ckpt_path:
        raise UsageError("validate.py needs --ckpt_path (a checkpoint written by finetune.py or MindCV)")
    check_writable_dir(cfg.report_dir or os.path.dirname(os.path.abspath(cfg.ckpt_path)), "report_dir")
    check_output_file(cfg.out, "out")
    runtime.setup(cfg)
    params = read_checkpoint(cfg.ckpt_path)
    split = cfg.split or cfg.val_split
    data = open_split(cfg, split, class_names=class_names_of(params))
    num_classes = resolve_num_classes(cfg, data.class_names)
    network = checkpoint_network(cfg, params, data.class_names)
    loader = build_loader(cfg, data, num_classes, training=False)
    logits, labels = predict_logits(network, loader, cfg.batch_size)
    del network, loader
    gc.collect()
    result, matrix = reports.class_report(logits, labels, data.class_names)
    result.update(split=split, checkpoint=cfg.ckpt_path, model=cfg.model, num_classes=num_classes)
    top5 = "n/a (fewer than 5 classes)" if result["top5"] is None else f"{result['top5']:.4f}"
    print(f"{cfg.model} on {split} ({result['num_samples']} images): top1 {result['top1']:.4f}  top5 {top5}  "
          f"loss {result['loss']:.4f}  mean per-class acc {result['mean_per_class_acc']:.4f}")
    write_reports(cfg.report_dir or os.path.dirname(os.path.abspath(cfg.ckpt_path)), matrix, data.class_names)
    if cfg.out:
        os.makedirs(os.path.dirname(os.path.abspath(cfg.out)), exist_ok=True)
        write_json(cfg.out, result)
        print(f"metrics written to {cfg.out}")
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
