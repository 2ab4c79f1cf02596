"""Learning-rate schedule: MindCV's ``create_scheduler`` with decay that follows ``epoch_size``.

MindCV keeps ``decay_epochs`` as configured, so shortening ``epoch_size`` (470 -> 50 in the
design document) leaves a cosine schedule near its peak at the end. Here ``decay_epochs``
defaults to ``epoch_size - warmup_epochs`` and is capped to it.
"""
from tools.core.errors import UsageError

from mindcv.scheduler import create_scheduler

MAX_STEPS = 10_000_000  # one lr per step lives in memory (a Python list, then a tensor): ~100x ImageNet's 300 epochs


def resolve_epochs(cfg):
    """``(warmup_epochs, decay_epochs)`` that fit inside ``epoch_size``; notes any change."""
    warmup = cfg.warmup_epochs
    if warmup >= cfg.epoch_size:
        warmup = cfg.epoch_size - 1
        print(f"note: warmup_epochs {cfg.warmup_epochs} >= epoch_size {cfg.epoch_size}; using {warmup}")
    room = cfg.epoch_size - warmup
    decay = room if cfg.decay_epochs is None else cfg.decay_epochs
    if decay > room:
        print(f"note: decay_epochs {decay} + warmup_epochs {warmup} > epoch_size {cfg.epoch_size}; "
              f"decaying over {room} epochs so the schedule ends at min_lr")
        decay = room
    return warmup, max(decay, 1)


def build_lr_schedule(cfg, steps_per_epoch):
    """One learning rate per training step, ``epoch_size * steps_per_epoch`` values."""
    if cfg.epoch_size * steps_per_epoch > MAX_STEPS:
        raise UsageError(f"'epoch_size' {cfg.epoch_size} at {steps_per_epoch} steps an epoch makes "
                         f"{cfg.epoch_size * steps_per_epoch} training steps, more than the {MAX_STEPS} an lr "
                         "schedule holds; lower epoch_size")
    warmup, decay = resolve_epochs(cfg)
    try:
        lrs = create_scheduler(
            steps_per_epoch, scheduler=cfg.scheduler, lr=cfg.lr, min_lr=cfg.min_lr, warmup_epochs=warmup,
            warmup_factor=cfg.warmup_factor, decay_epochs=decay, decay_rate=cfg.decay_rate,
            milestones=cfg.multi_step_decay_milestones, num_epochs=cfg.epoch_size, num_cycles=cfg.num_cycles,
            cycle_decay=cfg.cycle_decay, lr_epoch_stair=cfg.lr_epoch_stair)
    except ValueError as err:
        raise UsageError(f"scheduler '{cfg.scheduler}': {err}") from None
    return [float(v) for v in lrs]
