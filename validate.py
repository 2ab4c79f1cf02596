"""Evaluate a checkpoint on a dataset split: Top-1, Top-5 and loss over every image exactly once.

    python validate.py --config configs/demo.yaml --ckpt_path runs/demo/mobilenet_v3_small_100_best.ckpt
"""
import gc
import os
import sys

os.environ.setdefault("GLOG_v", "3")  # MindSpore: errors only

from tools import runtime  # noqa: E402
from tools.checkpoints import write_json  # noqa: E402
from tools.config import STR, parse_config  # noqa: E402
from tools.data import build_loader, open_split, resolve_num_classes  # noqa: E402
from tools.engine import evaluate  # noqa: E402
from tools.errors import UsageError, run_cli  # noqa: E402
from tools.model import class_names_of, create_network, load_weights, read_checkpoint  # noqa: E402

EXTRA = {"Validation": [
    ("split", "", STR, "split to evaluate (default: val_split)"),
    ("out", "", STR, "also write the metrics as JSON to this file"),
]}


def main(argv=None):
    cfg = parse_config(argv, "Evaluate a checkpoint on a dataset split.", extra=EXTRA)
    if not cfg.ckpt_path:
        raise UsageError("validate.py needs --ckpt_path (a checkpoint written by finetune.py or MindCV)")
    runtime.setup(cfg)
    params = read_checkpoint(cfg.ckpt_path)
    split = cfg.split or cfg.val_split
    data = open_split(cfg, split, class_names=class_names_of(params))
    num_classes = resolve_num_classes(cfg, data.class_names)
    network = create_network(cfg, num_classes, init_from_ckpt=False)
    load_weights(network, cfg.ckpt_path, cfg.model, params=params, drop_head=False)
    loader = build_loader(cfg, data, num_classes, training=False)
    result = evaluate(network, loader, cfg.batch_size)
    result.update(split=split, checkpoint=cfg.ckpt_path, model=cfg.model, num_classes=num_classes)
    top5 = "n/a (fewer than 5 classes)" if result["top5"] is None else f"{result['top5']:.4f}"
    print(f"{cfg.model} on {split} ({result['num_samples']} images): top1 {result['top1']:.4f}  top5 {top5}  "
          f"loss {result['loss']:.4f}")
    if cfg.out:
        write_json(cfg.out, result)
        print(f"metrics written to {cfg.out}")
    del network
    gc.collect()
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
