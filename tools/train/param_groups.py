"""Optimizer parameter groups: per-prefix lr / weight-decay multipliers, layer-wise lr decay and a
weight-decay filter that works together with them.

MindSpore applies a group's ``weight_decay`` to every parameter of the group: its rule "no decay for
names containing 'beta' or 'gamma'" only holds for ungrouped parameters. So every filter is applied
here, by giving the parameters it spares a group of their own with ``weight_decay`` 0.

The groups are meant for ``create_optimizer(groups, ..., weight_decay_filter="auto")`` (MindCV's only
mode that passes groups through) or for a MindSpore optimizer directly.
"""

from tools.core.errors import UsageError
from tools.models.blocks import block_index, feature_blocks, matches
from tools.models.norm_layers import norm_layers

WEIGHT_DECAY_FILTERS = ("disable", "auto", "norm_and_bias")
NORM_AND_BIAS_LEAVES = ("gamma", "beta", "bias")


def longest_match(name, prefixes):
    """The longest of ``prefixes`` that ``name`` lies under (at a ``.`` boundary), or None."""
    found = [p for p in prefixes if matches(name, p)]
    return max(found, key=len) if found else None


def _checked_mults(key, mults, params):
    """``mults`` ({prefix: factor}) after checking factors and that each prefix matches a parameter."""
    mults = dict(mults or {})
    for prefix, factor in mults.items():
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor < 0:
            raise UsageError(f"{key}: factor for '{prefix}' must be a number >= 0, got {factor!r}")
        if not any(matches(p.name, prefix) for p in params):
            raise UsageError(f"{key}: prefix '{prefix}' matches no trainable parameter")
    return mults


def _no_decay_names(network, params, weight_decay_filter):
    """Names of the trainable parameters that ``weight_decay_filter`` spares from weight decay."""
    if weight_decay_filter not in WEIGHT_DECAY_FILTERS:
        raise UsageError(f"weight_decay_filter must be one of {', '.join(WEIGHT_DECAY_FILTERS)}, "
                         f"got '{weight_decay_filter}'")
    if weight_decay_filter == "disable":
        return set()
    if weight_decay_filter == "auto":  # MindSpore's rule for ungrouped parameters
        return {p.name for p in params if "beta" in p.name or "gamma" in p.name}
    norm = {p.name for cell in norm_layers(network) for p in cell.get_parameters()}
    return norm | {p.name for p in params if p.name.rsplit(".", 1)[-1] in NORM_AND_BIAS_LEAVES}


def _layer_scales(network, layer_decay):
    """A function ``name -> (lr scale, label)``: ``layer_decay ** (n - i)`` in feature block i of n,
    1.0 (label None) outside the blocks (the head)."""
    if layer_decay is None:
        return lambda name: (1.0, None)
    if isinstance(layer_decay, bool) or not isinstance(layer_decay, (int, float)) or not 0 < layer_decay <= 1:
        raise UsageError(f"layer_decay must be in (0, 1], got {layer_decay!r}")
    blocks = feature_blocks(network)
    if not blocks:
        raise UsageError(f"layer_decay: no feature blocks found in {type(network).__name__}")

    def scale(name):
        i = block_index(name, blocks)
        if i is None:
            return 1.0, None
        return layer_decay ** (len(blocks) - i), f"layer_decay block {i} ({blocks[i].name})"
    return scale


def build_param_groups(network, lrs, weight_decay, weight_decay_filter="disable", lr_mult=None, wd_mult=None,
                       layer_decay=None):
    """``(groups, table_rows)``: optimizer group dicts for the trainable parameters of ``network``.

    A parameter's lr is ``lrs`` (one value per step) times its layer-decay scale times the ``lr_mult``
    factor of its longest matching prefix; its weight decay is ``weight_decay`` times the ``wd_mult``
    factor, or 0 where ``weight_decay_filter`` spares it. Parameters with equal (lr multiplier, weight
    decay) share a group; the last dict is ``{"order_params": trainable params}``.
    """
    params = network.trainable_params()
    lr_mult = _checked_mults("lr_mult", lr_mult, params)
    wd_mult = _checked_mults("wd_mult", wd_mult, params)
    no_decay = _no_decay_names(network, params, weight_decay_filter)
    layer_scale = _layer_scales(network, layer_decay)
    grouped = {}
    for param in params:
        lr_key, wd_key = longest_match(param.name, lr_mult), longest_match(param.name, wd_mult)
        scale, block_label = layer_scale(param.name)
        mult = scale * lr_mult.get(lr_key, 1.0)
        decay = 0.0 if param.name in no_decay else weight_decay * wd_mult.get(wd_key, 1.0)
        labels = [x for x in dict.fromkeys((block_label, lr_key, wd_key)) if x]
        group = grouped.setdefault((mult, decay), {"params": [], "labels": {}})
        group["params"].append(param)
        group["labels"][", ".join(labels) or "(rest)"] = None
    groups = [{"params": g["params"], "lr": [mult * lr for lr in lrs], "weight_decay": decay}
              for (mult, decay), g in grouped.items()]
    rows = [{"pattern": "; ".join(g["labels"]), "params": sum(p.size for p in g["params"]),
             "tensors": len(g["params"]), "lr_mult": mult, "weight_decay": decay}
            for (mult, decay), g in grouped.items()]
    return groups + [{"order_params": params}], rows


def format_group_table(rows):
    """``rows`` of ``build_param_groups`` as an aligned text table."""
    header = ("pattern", "tensors", "params", "lr_mult", "weight_decay")
    lines = [header] + [(r["pattern"], str(r["tensors"]), f"{r['params']:,}", f"{r['lr_mult']:.4g}",
                         f"{r['weight_decay']:g}") for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                               enumerate(zip(line, widths))).rstrip() for line in lines)
