"""One wiring of a training run, in the order it must happen, for finetune.py and the benchmarks.

data -> classes -> loaders -> model (checked on the image size) -> freezing -> loss -> lr schedule ->
optimizer -> gradient cut (or cached features) -> train step. Freezing must precede the optimizer
(it takes the trainable parameters) and the gradient cut; the schedule needs the loader's steps.
A technique enters here once, through its builder in tools/train/techniques/, which returns what it
changes (parameter groups, loader and cell, train step) and its Trainer callbacks.
"""
from dataclasses import dataclass, field
from typing import Any, List

from tools.core.errors import UsageError
from tools.datasets.loader import SplitData, build_loader, open_split, resolve_num_classes
from tools.models.factory import check_input_size, create_network
from tools.models.seeded_dropout import seed_dropouts
from tools.train import tasks, time_budget
from tools.train.freeze import FreezeReport, apply_freezing, cut_gradients
from tools.train.optimizer import build_optimizer
from tools.train.schedule import build_lr_schedule
from tools.train.techniques import distillation, freeze_epochs, progressive_resize, weight_averaging
from tools.train.techniques.imbalance import describe_weights
from tools.train.techniques.linear_probe import cached_training
from tools.train.techniques.tensorboard import tensorboard_callbacks
from tools.train.train_step import build_train_step


@dataclass
class Training:
    """Everything a training run is made of; ``train_step`` trains ``network`` (or its head)."""

    train_data: SplitData
    val_data: Any  # SplitData, or None without validation
    num_classes: int
    train_loader: Any
    val_loader: Any
    steps: int
    network: Any
    frozen: FreezeReport
    loss_fn: Any
    lrs: List[float]
    optimizer: Any
    train_step: Any
    extract_seconds: Any = None  # cache_features: seconds of the one pass over the data, else None
    callbacks: List = field(default_factory=list)  # Trainer callbacks (freeze_epochs, tensorboard)
    class_weights: Any = None  # the loss's per-class weights (numpy), or None
    teacher: Any = None  # distillation's Teacher (tools/train/techniques/distillation.py), or None

    @property
    def class_names(self):
        return self.train_data.class_names


def build_model(cfg, num_classes, steps, verbose=True, class_weights=None, schedule=None):
    """``(network, frozen, loss_fn, lrs, optimizer)`` for ``steps`` batches per epoch: the model checked on
    the image size, frozen as configured, the loss (weighted by ``class_weights``, one per class, if
    given) and the optimizer over what stays trainable (the backbone held at lr 0 for freeze_epochs).
    ``schedule(steps)`` replaces the configured lr schedule (tools/lr_find.py's ramp)."""
    network = create_network(cfg, num_classes)
    check_input_size(network, cfg)
    frozen = apply_freezing(network, cfg.freeze_backbone, cfg.freeze_layers, cfg.freeze_patterns, cfg.freeze_bn_stats)
    loss_fn = tasks.of(cfg).loss(cfg, class_weights)  # softmax CE, or sigmoid BCE for multi-label
    lrs = schedule(steps) if schedule else build_lr_schedule(cfg, steps)
    held = freeze_epochs.held_backbone(network, cfg.freeze_epochs, cfg.unfreeze_warmup_epochs, steps, len(lrs))
    optimizer = build_optimizer(cfg, network, lrs, verbose=verbose, regroup=held)
    return network, frozen, loss_fn, lrs, optimizer


def build_training(cfg, shard=(None, None), verbose=True, extract_features=True, schedule=None):
    """Build the run described by ``cfg`` on data shard ``shard`` = (num_shards, shard_id).

    ``extract_features=False`` (dry run) skips the one pass over the data that ``cache_features``
    costs and builds the train step on the whole network instead.
    """
    train_data = open_split(cfg, cfg.train_split, training=True, shard=shard)
    num_classes = resolve_num_classes(cfg, train_data.class_names)
    val_data = open_split(cfg, cfg.val_split, class_names=train_data.class_names) if cfg.val_while_train else None
    train_data, teacher = distillation.prepare(cfg, train_data, num_classes, cache=extract_features)
    train_loader = build_loader(cfg, train_data, num_classes, training=True)
    val_loader = build_loader(cfg, val_data, num_classes, training=False) if val_data else None
    steps = train_loader.get_dataset_size()
    if steps == 0:
        raise UsageError(f"{train_data.size} training images make no full batch of {cfg.batch_size}; "
                         "lower batch_size or set drop_remainder: False")
    class_weights = tasks.of(cfg).class_weights(cfg.class_weights, train_data.labels, num_classes)
    if verbose and class_weights is not None:
        print(f"class_weights: {describe_weights(class_weights, train_data.class_names)}")
    network, frozen, loss_fn, lrs, optimizer = build_model(cfg, num_classes, steps, verbose, class_weights, schedule)
    loss_fn = distillation.distilled_loss(cfg, loss_fn, teacher)
    resizing = progressive_resize.resize_callbacks(cfg, network, train_data, train_loader, num_classes, shard)
    features = None
    image_loader = resizing[0].loader_at(cfg.epoch_size) if resizing else train_loader  # weight averaging's
    if cfg.cache_features and extract_features:  # the head trains on features computed once
        features = cached_training(cfg, network, train_data.class_names, num_classes, steps, shard)
    if features and not cfg.freeze_epochs:  # the whole run trains the head on them
        train_loader, trained = features.loader, features.head
    else:
        trained = cut_gradients(network, frozen.frozen_blocks)
    train_step = build_train_step(cfg, trained, loss_fn, optimizer)
    callbacks = list(resizing)
    if cfg.freeze_epochs:  # the first epochs train through a second step (cut network or head), same optimizer
        train_step, switch = freeze_epochs.freeze_then_unfreeze(cfg, network, loss_fn, optimizer, train_step,
                                                                train_loader, features, verbose)
        callbacks.append(switch)
    callbacks += tensorboard_callbacks(cfg, steps, shard[1] or 0)
    callbacks += weight_averaging.averaging_callbacks(cfg, network, image_loader, val_loader)
    callbacks += time_budget.budget_callbacks(cfg)  # last: the time it records includes the averaging's
    seed_dropouts(network, cfg.seed, shard[1] or 0)  # repeatable masks that a resume continues (MindSpore's are not)
    return Training(train_data, val_data, num_classes, train_loader, val_loader, steps, network, frozen, loss_fn,
                    lrs, optimizer, train_step, features.seconds if features else None, callbacks, class_weights,
                    teacher)


def describe(cfg, run):
    """The plan of a run, as ``--dry_run`` prints it (data, classes, schedule, optimizer, train step)."""
    names = run.class_names
    shown = ", ".join(names[:5]) + (f", ... ({len(names) - 5} more)" if len(names) > 5 else "")
    val = (f"{run.val_data.size} images in '{cfg.val_split}'" if run.val_data else "none (val_while_train: False)")
    step = [f"loss scale {cfg.loss_scale:g} ({cfg.loss_scale_type}"
            + (", overflowed steps skipped" if cfg.loss_scale_type == "dynamic" or cfg.drop_overflow_update else "")
            + ")"]
    if cfg.clip_grad:
        step.append(f"gradients clipped to norm {cfg.clip_value:g} after the mean")
    if cfg.ema:
        step.append(f"EMA {cfg.ema_decay:g}")
    if cfg.gradient_accumulation_steps > 1:
        step.append(f"accumulation over {cfg.gradient_accumulation_steps} batches")
    if cfg.cache_features:
        step.append("cache_features: the head trains on features extracted once (not done in a dry run)")
    if cfg.freeze_epochs:
        step.append(freeze_epochs.plan_line(cfg, run.network))
    if run.teacher:
        step.append(run.teacher.plan_line(cfg))
    balance = [f"class_weights: {describe_weights(run.class_weights, names)}"] if run.class_weights is not None else []
    if cfg.sampler == "balanced":
        balance.append("sampler: balanced (every class equally likely in each epoch's draw)")
    evaluation = ([f"validation: every {cfg.val_interval} epochs and the last; early_stop_patience counts "
                   "validations"] if cfg.val_interval > 1 and run.val_data else [])
    evaluation += [progressive_resize.plan_line(cfg)] if cfg.image_resize_schedule else []
    evaluation += [time_budget.plan_line(cfg)] if cfg.max_time else []
    evaluation += [weight_averaging.plan_line(cfg)] if cfg.average_checkpoints else []
    return "\n".join([
        f"data: {cfg.data_dir} ({run.train_data.layout}); train: {run.train_data.size} images in "
        f"'{cfg.train_split}'" + (f" ({len(run.train_data.skipped)} unreadable skipped)" if run.train_data.skipped
                                  else "") + f"; val: {val}",
        f"classes: {run.num_classes} ({shown})",
        f"model: {cfg.model}, {cfg.image_resize} px; {run.frozen.summary()}",
        f"loss: {cfg.loss} (label_smoothing {cfg.label_smoothing:g}); optimizer: {cfg.opt}, weight_decay "
        f"{cfg.weight_decay:g}",
        f"schedule: {cfg.scheduler}, {run.steps} steps/epoch x {cfg.epoch_size} epochs = {len(run.lrs)} steps; "
        f"lr {run.lrs[0]:.3g} -> max {max(run.lrs):.3g} -> {run.lrs[-1]:.3g}",
        "train step: " + "; ".join(step),
        *balance,
        f"best checkpoint and early stop: val {cfg.best_metric} (min delta {cfg.early_stop_min_delta:g})",
        *evaluation,
    ])
