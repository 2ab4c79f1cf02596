"""A MindCV model's forward pass split after its first N feature blocks (``tools.blocks`` counts them).

``split_forward(network, count)`` returns ``(front, back)`` with ``back(front(x)) == network(x)``
for the families listed in ``_STAGES``: their forward pass is known here as cells run in order
(MobileNetV2/V3: ``features.i``; ConvNeXt: ``feature.i``, then its pool + final norm; ResNet,
ResNeSt: the stem cells, then ``layer1`` .. ``layer4``), followed by the network's own
``forward_head``. Subclasses that override none of ``construct``/``forward_features``/
``forward_head`` (e.g. SKNet) count as their family; other models get None.

Each family's ``back`` begins with a global average pool, so with ``count`` = all blocks it gives
the same result on features already pooled to ``(N, C, 1, 1)`` (the mean of one value is that value).
No cell here adds a name prefix: every parameter keeps its name (``features.3.weight`` ...).
"""
from mindcv.models.convnext import ConvNeXt
from mindcv.models.mobilenetv2 import MobileNetV2
from mindcv.models.mobilenetv3 import MobileNetV3
from mindcv.models.resnest import ResNeSt
from mindcv.models.resnet import ResNet
from mindspore import nn

from tools.blocks import feature_blocks


class _Run(nn.Cell):
    """``cells`` in order, then (``head``) the network's ``forward_head``."""

    def __init__(self, network, cells, head):
        super().__init__(auto_prefix=False)
        self.network = network
        self.stages = nn.CellList(cells, auto_prefix=False)
        self.head = head

    def construct(self, x):
        for cell in self.stages:
            x = cell(x)
        if self.head:
            x = self.network.forward_head(x)
        return x


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


# family -> net -> (the cells of each feature block, the cells between the last block and forward_head)
_STAGES = {
    MobileNetV2: _sequential("features"),
    MobileNetV3: _sequential("features"),
    ConvNeXt: _sequential("feature", _ConvNeXtPool),
    ResNet: _resnet(("conv1", "bn1", "relu", "max_pool")),
    ResNeSt: _resnet(("conv1", "bn1", "relu", "maxpool")),
}
_FORWARD = ("construct", "forward_features", "forward_head")


def _family_stages(network):
    """``(blocks, tail)`` of ``network``'s family, or None."""
    for family, stages in _STAGES.items():
        if isinstance(network, family) and all(getattr(type(network), m) is getattr(family, m) for m in _FORWARD):
            blocks, tail = stages(network)
            return (blocks, tail) if len(blocks) == len(feature_blocks(network)) else None
    return None


def split_forward(network, count):
    """``(front, back)``: the first ``count`` feature blocks, and the rest with the head; None when
    the model's family is not known here."""
    stages = _family_stages(network)
    if stages is None:
        return None
    blocks, tail = stages
    front = [cell for block in blocks[:count] for cell in block]
    back = [cell for block in blocks[count:] for cell in block] + tail
    return _Run(network, front, head=False), _Run(network, back, head=True)
