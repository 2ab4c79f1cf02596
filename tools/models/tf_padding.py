"""TensorFlow "same" padding for strided convolutions, so Keras-converted weights reproduce Keras.

A stride-2 convolution with an odd kernel ``k`` and symmetric padding ``(k-1)//2`` (what MindCV uses,
like PyTorch) and TensorFlow's ``padding="same"`` give the same output size, but TensorFlow puts the
padding at the bottom/right only (for an even input size). Every feature map is then shifted by
half a pixel relative to Keras's, so weights converted from Keras give different features
(cosine ~0.9 on MobileNetV2's pooled features) until the strided convolutions pad like TensorFlow.
MindSpore's ``pad_mode="same"`` is TensorFlow's rule (extra padding at the bottom/right).

``apply_tf_same_padding(network)`` must run before the network is first called (in GRAPH mode the
graph is compiled on the first call). It swaps the convolution primitive inside each eligible
``nn.Conv2d``; parameters (names, shapes, values) are untouched, so checkpoints load as before,
and output shapes do not change.
"""
import mindspore.nn as nn
import mindspore.ops as ops


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _same_like_padding(conv):
    """True when ``conv`` pads symmetrically by (effective_kernel - 1) / 2: TF "same" gives the same shape."""
    if conv.pad_mode != "pad":
        return False
    kernel, dilation = _pair(conv.kernel_size), _pair(conv.dilation)
    effective = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    if any(e % 2 == 0 for e in effective):
        return False
    padding = conv.padding
    pads = (padding,) * 4 if isinstance(padding, int) else tuple(padding)
    want = ((effective[0] - 1) // 2,) * 2 + ((effective[1] - 1) // 2,) * 2
    if len(pads) != 4 or pads != want:
        return False
    return any(p > 0 for p in pads)  # a padding-free (1x1) conv already pads like TF


def apply_tf_same_padding(network):
    """Switch every strided ``nn.Conv2d`` of ``network`` to TensorFlow "same" padding; return how many.

    Only convolutions with stride > 1, an odd (dilated) kernel larger than 1 and symmetric
    "half-kernel" padding are changed: for them TF "same" keeps the output size, so the network's
    shapes and parameters stay as they are. Convolutions padded otherwise ("valid", asymmetric,
    already "same") and stride-1 ones (where both paddings coincide) are left alone.
    Call it before the first forward pass (GRAPH mode compiles on the first call).
    """
    changed = 0
    for _, cell in network.cells_and_names():
        if not isinstance(cell, nn.Conv2d) or type(cell).construct is not nn.Conv2d.construct:
            continue
        if max(_pair(cell.stride)) < 2 or not _same_like_padding(cell):
            continue
        cell.pad_mode = "same"
        cell.padding = 0
        cell.conv2d = ops.Conv2D(out_channel=cell.out_channels, kernel_size=cell.kernel_size, mode=1,
                                 pad_mode="same", pad=0, stride=cell.stride, dilation=cell.dilation,
                                 group=cell.group, data_format=cell.data_format)
        changed += 1
    return changed
