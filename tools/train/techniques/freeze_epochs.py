"""``freeze_epochs: N``: train the head on a frozen backbone for N epochs, then unfreeze (fastai's
``fine_tune(freeze_epochs)``, Lightning's ``BackboneFinetuning``, "LP-FT").

One optimizer serves the whole run, built over what is trainable *after* the switch (the blocks that
``freeze_layers``/``freeze_patterns`` leave trainable, and the head), with one lr schedule over
``epoch_size`` epochs:

* epochs 1..N: the backbone's parameter groups have lr 0, so its weights stay bitwise unchanged, and
  the Trainer trains through a second train step whose network stops gradients after the last feature
  block (no backward pass through the backbone) and whose backbone BatchNorm layers run in inference
  mode (running statistics kept, as ``freeze_backbone`` with ``freeze_bn_stats``);
* from epoch N+1 the Trainer trains through the run's own train step: the backbone takes the
  schedule's lr of that step (times its ``lr_mult``), or with ``unfreeze_warmup_epochs: W`` a linear rise
  to it over W epochs; the head's lr never changes course.

Both train steps share the optimizer (weights, moments, step counter), so the resume state is the same
set of tensors before and after the switch (with ``cache_features`` the frozen step trains the head on
features cached once; its cell still holds the whole network's parameters); what a train step owns
itself (EMA weights, loss-scale
state, accumulated gradients) is carried over at the switch. The backbone's optimizer moments see only
weight decay during the frozen epochs (its gradients are zero there).

The technique reaches the wiring (tools/train/wiring.py) through two builders: :func:`held_backbone`
(what the optimizer must hold fixed when it is built: GRAPH mode compiles the lr schedules as constants)
and :func:`freeze_then_unfreeze` (the frozen epochs' train step and the callback that switches).
"""
from tools.models.blocks import block_index, feature_blocks
from tools.models.norm_layers import batch_norms
from tools.train.callbacks import Callback
from tools.train.freeze import cut_gradients
from tools.train.train_step import build_train_step, overwrite


def backbone_names(network):
    """Names of the parameters inside the feature blocks."""
    blocks = feature_blocks(network)
    return {p.name for p in network.get_parameters() if block_index(p.name, blocks) is not None}


def hold_groups(groups, names, held_steps, ramp_steps=0):
    """Optimizer ``groups`` (tools.train.param_groups) with the parameters named in ``names`` moved to groups of
    their own whose lr is 0 for the first ``held_steps`` steps, then (``unfreeze_warmup_epochs``) rises
    linearly to the schedule's over ``ramp_steps`` steps: step k after the switch takes (k + 1) / ramp_steps
    of the schedule's lr."""
    out = []
    for group in groups:
        if "params" not in group:
            out.append(group)
            continue
        held = [p for p in group["params"] if p.name in names]
        rest = [p for p in group["params"] if p.name not in names]
        if rest:
            out.append(dict(group, params=rest))
        if held:
            lrs = list(group["lr"])
            ramp = [lr * (k + 1) / ramp_steps for k, lr in enumerate(lrs[held_steps:held_steps + ramp_steps])]
            out.append(dict(group, params=held, lr=[0.0] * held_steps + ramp + lrs[held_steps + len(ramp):]))
    return out


def held_backbone(network, freeze_epochs, warmup_epochs, steps, total_steps):
    """What freeze_epochs changes in the optimizer's parameter groups (``build_optimizer``'s ``regroup``): the
    backbone's lr held at 0 for the frozen epochs' steps, then rising over ``warmup_epochs``
    (unfreeze_warmup_epochs), in a run of ``total_steps`` steps of ``steps`` per epoch; None without
    freeze_epochs."""
    if not freeze_epochs:
        return None
    held = min(freeze_epochs * steps, total_steps)
    ramp = min(warmup_epochs * steps, total_steps - held)
    names = backbone_names(network)
    return lambda groups: hold_groups(groups, names, held, ramp)


def freeze_then_unfreeze(cfg, network, loss_fn, optimizer, full_step, train_loader, features=None, verbose=True):
    """``(frozen step, callback)``: the train step of the first ``freeze_epochs`` epochs (over the run's
    optimizer: ``network`` cut after its last block, or with ``features``, the linear probe's
    :class:`~tools.train.techniques.linear_probe.CachedFeatures`, the head on them) and the
    :class:`FreezeThenUnfreeze` that switches to ``full_step`` (and ``train_loader``) after them."""
    frozen_step = build_train_step(cfg, features.head if features else frozen_network(network), loss_fn, optimizer)
    callback = FreezeThenUnfreeze(cfg.freeze_epochs, network, frozen_step, full_step, cfg.freeze_bn_stats,
                                  loaders=(features.loader, train_loader) if features else None)
    if verbose:
        print(f"freeze_epochs: {_first_epochs(cfg.freeze_epochs)} the head with the backbone frozen, then "
              "the backbone trains too" + (f" (after epoch_size {cfg.epoch_size}: not in this run)"
                                           if cfg.freeze_epochs >= cfg.epoch_size else ""), flush=True)
    return frozen_step, callback


def plan_line(cfg, network):
    """freeze_epochs in the dry-run plan (tools.train.wiring.describe)."""
    return (f"freeze_epochs: {_first_epochs(cfg.freeze_epochs)} with the backbone frozen "
            f"({len(backbone_names(network) & {p.name for p in network.trainable_params()})} tensors "
            f"at lr 0, no backward pass), then it trains on the schedule"
            + (f" (its lr rising over {cfg.unfreeze_warmup_epochs} "
               f"epoch{'s' * (cfg.unfreeze_warmup_epochs > 1)})"
               if cfg.unfreeze_warmup_epochs else ""))


def _first_epochs(count):
    """The frozen epochs with their verb: 'epoch 1 trains' or 'epochs 1-N train'."""
    return "epoch 1 trains" if count == 1 else f"epochs 1-{count} train"


class FreezeThenUnfreeze(Callback):
    """Swaps the Trainer's train step at the epoch boundary after ``epochs`` epochs. Its state is whether the
    backbone trains (``unfrozen``): a run resumed after the switch carries the resume state's tensors to
    the full step without announcing a switch it did not make."""

    def __init__(self, epochs, network, frozen_step, full_step, keep_bn_stats=True, loaders=None):
        """``loaders`` = (cached features, images): the frozen epochs train the head on cached features."""
        self.epochs, self.frozen_step, self.full_step, self.loaders = epochs, frozen_step, full_step, loaders
        blocks = feature_blocks(network)
        self.batch_norms = [cell for cell in batch_norms(network)
                            if block_index(cell.gamma.name, blocks) is not None] if keep_bn_stats else []
        self.bn_modes = [bn.use_batch_statistics for bn in self.batch_norms]  # as the run's freezing left them
        self.unfrozen = False

    def state_dict(self):
        return {"unfrozen": self.unfrozen}

    def load_state_dict(self, state):
        self.unfrozen = state["unfrozen"]

    def on_epoch_begin(self, trainer, epoch):
        if epoch <= self.epochs:  # before the first compile of the frozen step (a GRAPH-mode constant)
            for bn in self.batch_norms:
                bn.use_batch_statistics = False
            trainer.train_step = self.frozen_step
            if self.loaders:
                trainer.train_loader = self.loaders[0]
            self.unfrozen = False
        elif trainer.train_step is self.frozen_step:
            for bn, mode in zip(self.batch_norms, self.bn_modes):
                bn.use_batch_statistics = mode
            carry_state(self.frozen_step, self.full_step)
            trainer.train_step = self.full_step
            if self.loaders:
                trainer.train_loader = self.loaders[1]
            if trainer.is_main and not self.unfrozen:
                print(f"freeze_epochs: backbone unfrozen from epoch {epoch}", flush=True)
            self.unfrozen = True


def carry_state(source, target):
    """Copy the tensors ``source`` owns (EMA weights, loss scale, accumulated gradients) into the
    same-named tensors of ``target``; shared ones (weights, optimizer state) are the same objects."""
    own = {p.name: p for p in target.get_parameters()}
    for param in source.get_parameters():
        twin = own.get(param.name)
        if twin is not None and twin is not param:
            overwrite(twin, param)


def frozen_network(network):
    """The cell the frozen epochs train: ``network`` with the backward pass cut after the last block."""
    return cut_gradients(network, len(feature_blocks(network)))
