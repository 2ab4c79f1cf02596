"""MindCV 0.3.0's models on MindSpore 2.7.2 / CPU: the fixes that make them build and train, in one place.

MindCV's model code predates MindSpore 2.7.2 in places (removed ops, a changed ``pad``, lazy initialisers) and
some ops have no CPU kernel. :func:`create_model_fixed` is MindCV's ``create_model`` with these fixed: rexnet's
weight init, PVT's position embeddings, float16 weights, VOLO's and HaloNet's patch extraction and padding.
Patches of MindCV's classes, and of ``nn.Unfold.__init__`` (it keeps its arguments), are installed when this
module is imported; ``nn.Unfold``'s CPU computation by :func:`install_cpu_unfold`, which ``create_model_fixed``
calls on CPU (an ``nn.Unfold`` made before this module was imported has no kept arguments and cannot use it).
"""
import sys
import types
from contextlib import contextmanager

import mindspore as ms
from mindcv.models import create_model, halonet, volo
from mindcv.models.pvt import PyramidVisionTransformer
from mindspore import nn, ops
from mindspore.common import initializer as ms_init


def create_model_fixed(**kwargs):
    """``mindcv.models.create_model(**kwargs)`` with the fixes of this module."""
    if ms.get_context("device_target") == "CPU":
        install_cpu_unfold()
    with _initialised_initializer():
        return _float32_weights(create_model(**kwargs))


@contextmanager
def _initialised_initializer():
    """MindCV's rexnet reshapes a lazy ``initializer(...)`` tensor, which MindSpore 2.7.2 refuses
    ("Tensor ... is uninitialized"); while a model is built, initializers return initialised tensors."""
    lazy = ms_init.initializer
    ms_init.initializer = lambda *args, **kwargs: lazy(*args, **kwargs).init_data()
    try:
        yield
    finally:
        ms_init.initializer = lazy


def _pvt_pos_embed(self, pos_embed, ph, pw, H, W):
    """PVT's position embedding of a ph x pw grid for an H x W grid. MindCV 0.3.0 compares every stage with
    stage 1's grid, so stages 2-4 always resize, and resizes with ``ops.ResizeBilinear``, which MindSpore
    2.7.2 no longer has: every pvt_* failed. Here a grid of the embedding's own size is kept as it is and
    another is resized with ``ResizeBilinearV2`` (the same corners and centres as the old op)."""
    if H == ph and W == pw:
        return pos_embed
    grid = ops.transpose(ops.reshape(pos_embed, (1, ph, pw, -1)), (0, 3, 1, 2))
    grid = ops.ResizeBilinearV2()(grid, (H, W))
    return ops.transpose(ops.reshape(grid, (1, -1, H * W)), (0, 2, 1))


PyramidVisionTransformer._get_pos_embed = _pvt_pos_embed


def extract_patches(x, ksizes, strides, rates, same):
    """MindSpore's ``ExtractImagePatches`` (``nn.Unfold``) of an NCHW tensor by two gathers, which every device has
    (the op has no CPU kernel) and which differentiate (strided slices do not on CPU: StridedSliceGrad fails).
    ``ksizes``, ``strides`` and ``rates`` are (rows, cols) pairs; ``same`` chooses "same" padding over "valid".
    As the op (its GPU kernel runs TensorFlow's NHWC extraction between two transposes), output channel
    ``(i * kw + j) * C + c`` at (r, q) holds channel c at row ``r * stride_row + i * rate_row - top``, column
    ``q * stride_col + j * rate_col - left``, or 0 outside the image. "valid": top = left = 0 and every patch lies
    inside the image; "same": ceil(size / stride) patches per axis, the missing extent padded with zeros, half of
    it (rounded down) before the image."""
    batch, channels, height, width = x.shape
    (kh, kw), (sh, sw), (rh, rw) = ksizes, strides, rates
    extent_h, extent_w = (kh - 1) * rh + 1, (kw - 1) * rw + 1
    if same:
        out_h, out_w = (height + sh - 1) // sh, (width + sw - 1) // sw
        pad_h = max((out_h - 1) * sh + extent_h - height, 0)
        pad_w = max((out_w - 1) * sw + extent_w - width, 0)
        x = ops.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
    else:
        out_h, out_w = (height - extent_h) // sh + 1, (width - extent_w) // sw + 1
    rows = ops.reshape(ops.arange(kh) * rh, (kh, 1)) + ops.reshape(ops.arange(out_h) * sh, (1, out_h))
    cols = ops.reshape(ops.arange(kw) * rw, (kw, 1)) + ops.reshape(ops.arange(out_w) * sw, (1, out_w))
    patches = ops.gather(ops.gather(x, rows, 2), cols, 4)  # batch, C, kh, out_h, kw, out_w
    patches = ops.transpose(patches, (0, 2, 4, 1, 3, 5))
    return ops.reshape(patches, (batch, kh * kw * channels, out_h, out_w))


_unfold_init = nn.Unfold.__init__


def _unfold_init_keeping_arguments(self, ksizes, strides, rates, padding="valid"):
    """``nn.Unfold.__init__`` (which checks its arguments) that also keeps them as ``extract_patches`` takes them,
    for ``_unfold_by_gathering``: graph mode cannot read them from the op."""
    _unfold_init(self, ksizes, strides, rates, padding)
    self.patch_arguments = (tuple(ksizes[1:3]), tuple(strides[1:3]), tuple(rates[1:3]), padding.upper() == "SAME")


nn.Unfold.__init__ = _unfold_init_keeping_arguments


def _unfold_by_gathering(self, input_x):
    """``nn.Unfold.construct`` by ``extract_patches``. Named ``construct``: graph mode could not nest an Unfold run
    on its own before ("Parse Resolve convert failed") when its construct had another name."""
    return extract_patches(input_x, *self.patch_arguments)


_unfold_by_gathering.__name__ = "construct"


def install_cpu_unfold():
    """``nn.Unfold`` computed by :func:`extract_patches`: ``ExtractImagePatches`` has no CPU kernel (VOLO, HaloNet)."""
    nn.Unfold.construct = _unfold_by_gathering


def _pad_taking_pairs(input_x, padding=None, mode="constant", value=None, paddings=None):
    """``ops.pad`` that also takes MindSpore 1.x's form, ((before, after), ...) for every dimension from the first,
    as ``padding`` or ``paddings``: MindCV's VOLO and HaloNet pad so and MindSpore 2.7.2 refuses it (TypeError)."""
    padding = paddings if padding is None else padding
    if isinstance(padding[0], (tuple, list)):
        flat = ()
        for before, after in padding[::-1]:
            flat += (before, after)
        padding = flat
    return ops.pad(input_x, padding, mode, value)


def _ops_taking_pair_paddings():
    """A copy of ``mindspore.ops`` whose ``pad`` is ``_pad_taking_pairs``, for the MindCV modules that need it;
    in ``sys.modules``, as graph mode finds a module's functions by importing it by name."""
    module = types.ModuleType("tools_mindcv_fixes_ops_taking_pair_paddings")
    module.__dict__.update({name: value for name, value in vars(ops).items() if not name.startswith("__")})
    module.pad = _pad_taking_pairs
    sys.modules[module.__name__] = module
    return module


volo.ops = halonet.ops = _ops_taking_pair_paddings()


class _WeightInInputDtype(nn.Cell):
    """A convolution primitive called with its weight cast to its input's dtype."""

    def __init__(self, conv):
        super().__init__()
        self.conv = conv

    def construct(self, x, weight, size):
        return self.conv(x, ops.cast(weight, x.dtype), size)


_volo_fold_init = volo.Fold.__init__


def _volo_fold_init_any_dtype(self, *args, **kwargs):
    """VOLO's ``Fold`` (a transposed convolution with a weight of zeros and ones) keeps its weight as a float16
    tensor, which ``Conv2DTranspose`` refuses with a float32 input: the weight is cast to the input's dtype."""
    _volo_fold_init(self, *args, **kwargs)
    self.conv_transpose2d = _WeightInInputDtype(self.conv_transpose2d)


volo.Fold.__init__ = _volo_fold_init_any_dtype


def _float32_weights(network):
    """Make every float16 weight float32. MindCV's PVT keeps its position embeddings in float16 inside a
    float32 network, and an Adam step on a float16 weight (its epsilon rounds to 0) made the loss NaN at the
    second step; mixed precision (``amp_level``) casts in the cells and expects float32 weights."""
    for _, cell in network.cells_and_names():
        for name, param in list(cell.parameters_and_names(expand=False)):
            if param.dtype == ms.float16:
                setattr(cell, name, ms.Parameter(param.astype(ms.float32), name=param.name,
                                                 requires_grad=param.requires_grad))
    return network
