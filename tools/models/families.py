"""What the suite knows per MindCV model family, one entry per family: add a family here (plus its row in
``tests/unit/models/test_families.py``) and its blocks, gradient cut, head and "shallow layers" follow.

An entry says:

* ``cls``: the MindCV class; a subclass that overrides none of ``construct``/``forward_features``/
  ``forward_head`` (e.g. SKNet of ResNet) counts as its family;
* ``stages``: the network's forward pass as cells run in order, one list per feature block of
  ``tools.models.blocks.feature_blocks`` (same count, same order), plus the cells between the last block and
  ``forward_head`` (``tools.models.stages`` splits the forward pass with it);
* ``shallow``: how many leading blocks the modes table (``tools.report.modes_table``) freezes as "shallow layers".

The head (classifier) name comes from MindCV's per-model pretrained configuration (``head_prefix``),
the one place the suite reads that configuration (``pretrained_value``).
"""
from dataclasses import dataclass
from typing import Callable

from mindcv.models.convnext import ConvNeXt
from mindcv.models.mobilenetv2 import MobileNetV2
from mindcv.models.mobilenetv3 import MobileNetV3
from mindcv.models.registry import get_pretrained_cfg_value
from mindcv.models.resnest import ResNeSt
from mindcv.models.resnet import ResNet
from mindspore import nn


@dataclass(frozen=True)
class Family:
    cls: type
    stages: Callable  # net -> ([cells of block 0, cells of block 1, ...], [cells before forward_head])
    shallow: Callable  # (all blocks, blocks with weights) -> freeze_layers value of "freeze shallow layers"


class _ConvNeXtPool(nn.Cell):
    """The end of ConvNeXt's ``forward_features``: global average pool, then its final norm."""

    def __init__(self, network):
        super().__init__(auto_prefix=False)
        self.norm = network.norm

    def construct(self, x):
        return self.norm(x.mean([-2, -1]))


def _sequential(attr, tail=None):
    """Block i is ``<attr>.i``; ``tail`` builds the cell that ends ``forward_features``, if any."""
    def stages(net):
        return [[cell] for cell in getattr(net, attr)], [tail(net)] if tail else []
    return stages


def _resnet(stem):
    """Block 0 is the stem (``stem`` cells, run in that order), blocks 1-4 are ``layer1`` .. ``layer4``."""
    def stages(net):
        return [[getattr(net, name) for name in stem]] + [[getattr(net, f"layer{i}")] for i in range(1, 5)], []
    return stages


def _first_seven(blocks, weighted):
    return 7  # the design document's "first 7 layers": features.0 .. features.6


def _forty_percent(blocks, weighted):
    """Up to and including the block that ends the first 40% of the blocks with weights."""
    return blocks.index(weighted[max(1, round(0.4 * len(weighted))) - 1]) + 1


FAMILIES = (
    Family(MobileNetV2, _sequential("features"), _first_seven),
    Family(MobileNetV3, _sequential("features"), _first_seven),
    Family(ConvNeXt, _sequential("feature", _ConvNeXtPool), _forty_percent),
    Family(ResNet, _resnet(("conv1", "bn1", "relu", "max_pool")), _forty_percent),
    Family(ResNeSt, _resnet(("conv1", "bn1", "relu", "maxpool")), _forty_percent),
)
_FORWARD = ("construct", "forward_features", "forward_head")


def family_of(network):
    """The ``Family`` of ``network``, or None (a subclass with its own forward pass is not its family)."""
    for family in FAMILIES:
        if isinstance(network, family.cls) and all(
                getattr(type(network), m) is getattr(family.cls, m) for m in _FORWARD):
            return family
    return None


def shallow_layers(network, blocks, weighted):
    """``freeze_layers`` value that freezes the "shallow layers" of ``network`` (``blocks``: its feature
    blocks, ``weighted``: those with weights). Models of no listed family: the first 7 of ``features.i``
    blocks, else the first 40% of the blocks with weights."""
    family = family_of(network)
    if family:
        rule = family.shallow
    else:
        rule = _first_seven if weighted and weighted[0].name.startswith("features.") else _forty_percent
    return rule(blocks, weighted)


def pretrained_value(model_name, key):
    """``key`` of MindCV's pretrained configuration of ``model_name`` (``url``, ``input_size``,
    ``classifier``, ...), or None."""
    return get_pretrained_cfg_value(model_name, key)


def head_prefix(model_name):
    """Name prefix of the model's classification head (e.g. ``classifier.3`` for MobileNetV3)."""
    return pretrained_value(model_name, "classifier") or "classifier"
