"""Fine-tune a MindCV model on a custom dataset (split folders or Aircraft-style annotation files).

    python finetune.py --config configs/demo.yaml [--key value ...]
"""
import gc
import os
import sys

os.environ.setdefault("GLOG_v", "3")  # MindSpore: errors only

from mindcv.loss import create_loss  # noqa: E402

from tools import runtime  # noqa: E402
from tools.config import CONFIG_FILE_NAME, parse_config, save_config  # noqa: E402
from tools.data import build_loader, open_split, resolve_num_classes  # noqa: E402
from tools.engine import RESUME_FILE, Trainer, build_train_step, weights_digest  # noqa: E402
from tools.errors import UsageError, run_cli  # noqa: E402
from tools.freeze import apply_freezing, cut_gradients  # noqa: E402
from tools.linear_probe import cached_training  # noqa: E402
from tools.model import create_network  # noqa: E402
from tools.optim import build_optimizer  # noqa: E402
from tools.schedule import build_lr_schedule  # noqa: E402
from tools.seeded_dropout import seed_dropouts  # noqa: E402


def output_dir(cfg):
    """``ckpt_save_dir``, or a fresh ``<dir>_N`` beside it when it holds another run's outputs."""
    base = cfg.ckpt_save_dir
    if cfg.resume or cfg.overwrite or not _holds_run(base):
        return base
    n = 2
    while _holds_run(f"{base}_{n}") or os.path.exists(f"{base}_{n}") and os.listdir(f"{base}_{n}"):
        n += 1
    print(f"note: {base} holds a previous run; writing to {base}_{n} (overwrite: True reuses {base})")
    return f"{base}_{n}"


def _holds_run(path):
    return os.path.isdir(path) and any(
        name in ("results.csv", CONFIG_FILE_NAME, RESUME_FILE) or name.endswith(".ckpt") for name in os.listdir(path))


def _resuming_at(epoch, step):
    if step:
        return f", resuming at epoch {epoch} step {step + 1}"
    return f", resuming at epoch {epoch}" if epoch > 1 else ""


def main(argv=None):
    cfg = parse_config(argv, "Fine-tune a MindCV model on a custom dataset.")
    shard = runtime.setup(cfg)
    cfg.ckpt_save_dir = output_dir(cfg)
    rank = shard[1] or 0

    train_data = open_split(cfg, cfg.train_split, training=True, shard=shard)
    num_classes = resolve_num_classes(cfg, train_data.class_names)
    val_data = open_split(cfg, cfg.val_split, class_names=train_data.class_names) if cfg.val_while_train else None
    train_loader = build_loader(cfg, train_data, num_classes, training=True)
    val_loader = build_loader(cfg, val_data, num_classes, training=False) if val_data else None
    steps = train_loader.get_dataset_size()
    if steps == 0:
        raise UsageError(f"{train_data.size} training images make no full batch of {cfg.batch_size}; "
                         "lower batch_size or set drop_remainder: False")

    network = create_network(cfg, num_classes)
    frozen = apply_freezing(network, cfg.freeze_backbone, cfg.freeze_layers, cfg.freeze_patterns,
                            cfg.freeze_bn_stats)
    loss_fn = create_loss(name=cfg.loss, reduction=cfg.reduction, label_smoothing=cfg.label_smoothing,
                          aux_factor=cfg.aux_factor)
    lrs = build_lr_schedule(cfg, steps)
    optimizer = build_optimizer(cfg, network, lrs, verbose=rank == 0)
    if cfg.cache_features:  # the head trains on features computed once; validation uses the whole network
        train_loader, trained = cached_training(cfg, network, train_data.class_names, num_classes, shard)
    else:
        trained = cut_gradients(network, frozen.frozen_blocks)
    train_step = build_train_step(cfg, trained, loss_fn, optimizer)
    trainer = Trainer(cfg, network, train_step, lrs, train_data.class_names, rank)
    seed_dropouts(network, cfg.seed, rank)  # repeatable masks that a resume continues (MindSpore's are neither)
    start_epoch = trainer.resume(cfg.resume) if cfg.resume else 1

    if rank == 0:
        os.makedirs(cfg.ckpt_save_dir, exist_ok=True)
        save_config(cfg, os.path.join(cfg.ckpt_save_dir, CONFIG_FILE_NAME))
        print(frozen.summary())
        print(f"{cfg.model}: {num_classes} classes, {train_data.size} train images ({train_data.layout}), "
              f"{val_data.size if val_data else 0} val images, {steps} steps/epoch, {cfg.epoch_size} epochs"
              f"{_resuming_at(start_epoch, trainer.resume_step[0])}; outputs in {cfg.ckpt_save_dir}", flush=True)
    trainer.fit(train_loader, val_loader, start_epoch)
    if shard[0]:
        print(f"rank {rank}: final weights digest {weights_digest(network)}", flush=True)
    if rank == 0 and trainer.best_top1 is not None:
        print(f"best val top1 {trainer.best_top1:.4f}; checkpoints: {trainer.checkpoint_path('best')}, "
              f"{trainer.checkpoint_path('last')}")
    del trainer, train_step, trained, optimizer, network
    gc.collect()
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
