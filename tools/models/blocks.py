"""The feature extractor of a MindCV model as an ordered list of blocks ("layers").

* Models with a ``features``/``feature`` SequentialCell (MobileNetV2/V3, ConvNeXt, ...): block i is
  ``features.i``, exactly as the design document counts layers (``features.0`` ... ``features.6``
  are "the first 7 layers"; ``features.1`` never matches ``features.10``).
* Other models (ResNet, ResNeSt, ...): the cells before the first stage form one ``stem`` block,
  then each stage (``layer1`` ... ``layer4``) is a block.

Everything outside the blocks is the head (e.g. ``classifier.*`` for MobileNetV3).
"""
from dataclasses import dataclass
from typing import List

from mindspore import nn


@dataclass
class Block:
    name: str
    prefixes: List[str]


def matches(param_name, prefix):
    """True when ``param_name`` lies under ``prefix`` at a ``.`` boundary."""
    return param_name == prefix or param_name.startswith(prefix + ".")


def _has_params(cell):
    return any(True for _ in cell.get_parameters())


def feature_blocks(network):
    """The ordered feature blocks of ``network`` (see module docstring)."""
    for attr in ("features", "feature"):
        seq = getattr(network, attr, None)
        if isinstance(seq, nn.SequentialCell):
            return [Block(f"{attr}.{i}", [f"{attr}.{i}"]) for i in range(len(seq))]
    blocks, stem = [], []
    for name, cell in network.name_cells().items():
        if not _has_params(cell):
            continue
        if name.startswith("layer") or name.startswith("stage"):
            if stem:
                blocks.append(Block("stem", stem))
                stem = []
            blocks.append(Block(name, [name]))
        elif not blocks:
            stem.append(name)
    return blocks


def block_index(param_name, blocks):
    """Index of the block holding ``param_name``, or None for head parameters."""
    for i, block in enumerate(blocks):
        if any(matches(param_name, p) for p in block.prefixes):
            return i
    return None
