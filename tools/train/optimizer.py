"""Optimizer: MindCV's ``create_optimizer`` over this suite's parameter groups.

The groups (tools/train/param_groups.py) carry per-group lr schedules and weight decay, so lr_mult,
wd_mult, layer_decay and every weight_decay_filter work together; MindCV itself only accepts
groups with ``weight_decay_filter: auto``, so that is what it is given.
"""
import logging

from tools.train.param_groups import build_param_groups, format_group_table

from mindcv.optim import create_optimizer

logging.getLogger("mindcv.optim.optim_factory").setLevel(logging.ERROR)  # its "AUTO filter" notice


def build_optimizer(cfg, network, lrs, verbose=True, regroup=None):
    """The configured optimizer; gradients are unscaled by the train step, so loss_scale is 1 here.

    ``regroup(groups) -> groups``: a technique's change to the parameter groups, which must be fixed when the
    optimizer is built (GRAPH mode compiles the lr schedules as constants); freeze_epochs holds the
    backbone's lr (tools.train.techniques.freeze_epochs.held_backbone).
    """
    groups, rows = build_param_groups(network, lrs, cfg.weight_decay, weight_decay_filter=cfg.weight_decay_filter,
                                      lr_mult=cfg.lr_mult, wd_mult=cfg.wd_mult, layer_decay=cfg.layer_decay)
    if regroup:
        groups = regroup(groups)
    if verbose:
        print("parameter groups:\n" + format_group_table(rows))
    return create_optimizer(shared_schedule(groups, lrs), opt=cfg.opt, lr=lrs, weight_decay=cfg.weight_decay,
                            momentum=cfg.momentum, nesterov=cfg.use_nesterov, weight_decay_filter="auto",
                            loss_scale=1.0, eps=cfg.eps)


def shared_schedule(groups, lrs):
    """``groups`` without their own ``lr`` when every group's is ``lrs`` itself (no lr_mult, layer_decay or held
    backbone): MindSpore then keeps one learning-rate schedule instead of one per group, which compiles the
    train step's graph faster (bench/bench_compile.py: about 7 s of a 19 s first step on the demo) and
    trains the same weights."""
    own = [group for group in groups if "params" in group]
    if any(list(group["lr"]) != list(lrs) for group in own):
        return groups
    return [{k: v for k, v in group.items() if k != "lr"} for group in groups]
