"""Which cells of a network are normalisation layers: one answer for freezing (BatchNorm statistics) and
for the weight-decay filter (every normalisation layer's parameters).

``BATCH_NORMS`` are the cells with running statistics: MindSpore's BatchNorm1d/2d and SyncBatchNorm (on
2.7.2 exactly the subclasses of its private ``_BatchNorm``; BatchNorm3d wraps a BatchNorm2d, so its
statistics are found through that). ``NORM_CELLS`` adds the normalisation layers without statistics.
"""
from mindspore import nn

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.SyncBatchNorm)
NORM_CELLS = BATCH_NORMS + (nn.BatchNorm3d, nn.LayerNorm, nn.LayerNormExt, nn.GroupNorm,
                            nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)


def batch_norms(network):
    """The cells of ``network`` with BatchNorm running statistics, in network order."""
    return [cell for _, cell in network.cells_and_names() if isinstance(cell, BATCH_NORMS)]


def norm_layers(network):
    """Every normalisation cell of ``network`` (``NORM_CELLS``), in network order."""
    return [cell for _, cell in network.cells_and_names() if isinstance(cell, NORM_CELLS)]
