"""A MindCV model's forward pass split after its first N feature blocks (``tools.models.blocks`` counts them).

``split_forward(network, count)`` returns ``(front, back)`` with ``back(front(x)) == network(x)``
for the families listed in ``tools.models.families`` (which knows each family's forward pass as cells run in
order), followed by the network's own ``forward_head``; other models get None.

Each family's ``back`` begins with a global average pool, so with ``count`` = all blocks it gives
the same result on features already pooled to ``(N, C, 1, 1)`` (the mean of one value is that value).
No cell here adds a name prefix: every parameter keeps its name (``features.3.weight`` ...).
"""
from tools.models.blocks import feature_blocks
from tools.models.families import family_of

from mindspore import nn


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


def _family_stages(network):
    """``(blocks, tail)`` of ``network``'s family (``tools.models.families``), or None."""
    family = family_of(network)
    if family is None:
        return None
    blocks, tail = family.stages(network)
    return (blocks, tail) if len(blocks) == len(feature_blocks(network)) else None


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
