"""Freezing parts of a network: by feature block, the whole backbone, or name patterns.

Blocks come from ``tools.blocks.feature_blocks`` and are matched by exact index, so freezing
``features.1`` never freezes ``features.10``. BatchNorm layers whose parameters are all frozen run
in inference mode (``use_batch_statistics = False``): ``requires_grad = False`` alone still lets
their running statistics move in train mode.
"""
import re
from dataclasses import dataclass

from mindspore import nn

from tools.blocks import block_index, feature_blocks
from tools.errors import UsageError


@dataclass
class FreezeReport:
    trainable_params: int
    frozen_params: int
    trainable_tensors: int
    frozen_tensors: int
    frozen_bn_layers: int

    def summary(self):
        return (f"trainable {self.trainable_params:,} params ({self.trainable_tensors} tensors), "
                f"frozen {self.frozen_params:,} params ({self.frozen_tensors} tensors); "
                f"{self.frozen_bn_layers} BatchNorm layers in inference mode")


def _compile_patterns(patterns):
    compiled = []
    for pattern in patterns or ():
        try:
            compiled.append(re.compile(pattern))
        except re.error as err:
            raise UsageError(f"freeze_patterns: invalid regex '{pattern}': {err}") from None
    return compiled


def _frozen_blocks(blocks, freeze_backbone, freeze_layers):
    if freeze_layers < 0 or freeze_layers > len(blocks):
        raise UsageError(f"freeze_layers must be between 0 and {len(blocks)} (the model's feature blocks), "
                         f"got {freeze_layers}")
    return len(blocks) if freeze_backbone else freeze_layers


def apply_freezing(network, freeze_backbone=False, freeze_layers=0, freeze_patterns=(), freeze_bn_stats=True):
    """Set ``requires_grad = False`` on the chosen parameters; returns a FreezeReport."""
    blocks = feature_blocks(network)
    first_trainable = _frozen_blocks(blocks, freeze_backbone, freeze_layers)
    patterns = _compile_patterns(freeze_patterns)
    params = [p for p in network.get_parameters() if p.requires_grad]
    for pattern in patterns:
        if not any(pattern.search(p.name) for p in params):
            raise UsageError(f"freeze_patterns: '{pattern.pattern}' matches no trainable parameter")
    for param in params:
        index = block_index(param.name, blocks)
        in_frozen_block = index is not None and index < first_trainable
        if in_frozen_block or any(pattern.search(param.name) for pattern in patterns):
            param.requires_grad = False
    bn_layers = _freeze_bn_statistics(network) if freeze_bn_stats else 0
    return _report(network, bn_layers)


def _freeze_bn_statistics(network):
    """Put BatchNorm layers with all-frozen gamma/beta in inference mode; returns how many."""
    count = 0
    for _, cell in network.cells_and_names():
        if isinstance(cell, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
            if not cell.gamma.requires_grad and not cell.beta.requires_grad:
                cell.use_batch_statistics = False
                count += 1
    return count


def _report(network, bn_layers):
    trainable = [p for p in network.get_parameters() if p.requires_grad]
    frozen = [p for p in network.get_parameters() if not p.requires_grad
              and not p.name.endswith(("moving_mean", "moving_variance"))]
    return FreezeReport(sum(p.size for p in trainable), sum(p.size for p in frozen), len(trainable), len(frozen),
                        bn_layers)
