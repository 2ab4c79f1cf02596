"""Optimizer: MindCV's ``create_optimizer`` over the trainable parameters and the lr schedule."""
from mindcv.optim import create_optimizer


def build_optimizer(cfg, network, lrs):
    """The configured optimizer; gradients are unscaled by the train step, so loss_scale is 1 here."""
    return create_optimizer(network.trainable_params(), opt=cfg.opt, lr=lrs, weight_decay=cfg.weight_decay,
                            momentum=cfg.momentum, nesterov=cfg.use_nesterov,
                            weight_decay_filter=cfg.weight_decay_filter, loss_scale=1.0, eps=cfg.eps)
