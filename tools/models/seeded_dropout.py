"""Dropout whose masks are a function of (seed, layer, call number, element): repeatable and resumable.

MindSpore's ``nn.Dropout`` (MindCV's MobileNetV2/V3 heads, drop-path) draws its masks inside the CPU
kernel: the kernel's generator cannot be read or set (MindSpore's ``get_rng_state``/``Generator`` only
serve the ``mint`` random ops, which have no CPU kernels), so a resumed process draws other masks; and
the kernel is not even repeatable, two processes with the same seed now and then draw different masks.
:func:`seed_dropouts` turns every ``nn.Dropout`` of a network into :class:`SeededDropout`, which keeps
the same keep-probability and ``1/keep`` scaling but computes the mask from an integer hash (Chris
Wellons' 32-bit "lowbias" family, constants below 2**31 so int64 products do not overflow) of the
element index and a per-layer call counter. The counter is a Parameter, so it travels in the resume
state and a resumed run draws exactly the masks the uninterrupted run would.
"""
import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops

COUNTER_SUFFIX = ".dropout_calls"
_MASK32 = 0xFFFFFFFF


def _mix(h):
    """A 32-bit integer hash of each element of int64 tensor ``h`` (values in [0, 2**32))."""
    h = ops.bitwise_xor(h, ops.floor_divide(h, 65536))
    h = ops.bitwise_and(h * 0x21F0AAAD, _MASK32)
    h = ops.bitwise_xor(h, ops.floor_divide(h, 32768))
    h = ops.bitwise_and(h * 0x735A2D97, _MASK32)
    return ops.bitwise_xor(h, ops.floor_divide(h, 32768))


def _mix_int(h):
    """:func:`_mix` for one Python int."""
    return int(_mix(Tensor(np.array([h & _MASK32], np.int64))).asnumpy()[0])


class SeededDropout(nn.Dropout):
    """``nn.Dropout`` with masks hashed from (layer key, call counter, element index)."""

    def construct(self, x):
        if not self.training or self.keep_prob == 1 or self.p == 0:
            return x
        calls = ops.assign_add(self.dropout_calls, Tensor(1, ms.int64))
        key = _mix(ops.bitwise_xor(calls, self.layer_key))
        index = ops.arange(0, x.size, dtype=ms.int64).reshape(x.shape)
        bits = _mix(ops.bitwise_xor(index, key))
        mask = ops.stop_gradient(ops.cast(ops.floor_divide(bits, 256) < self.keep_below, x.dtype))
        return x * mask / self.keep_prob


def seed_dropouts(cell, seed, rank=0):
    """Make every ``nn.Dropout`` under ``cell`` a :class:`SeededDropout`; returns how many.

    ``rank`` (data parallel) gives each worker its own masks. Call it after the train step is built
    (EMA and the optimizer then leave the counters alone).
    """
    count = 0
    for name, sub in cell.cells_and_names():
        if not isinstance(sub, nn.Dropout) or isinstance(sub, SeededDropout):
            continue
        keep = float(sub.keep_prob if sub.p is None else 1.0 - sub.p)
        sub.__class__ = SeededDropout
        sub.keep_prob = keep
        sub.keep_below = int(round(keep * 2 ** 24))
        sub.layer_key = Tensor(_mix_int(_mix_int(_mix_int(seed) ^ rank) ^ count), ms.int64)
        sub.dropout_calls = Parameter(Tensor(0, ms.int64), name=name + COUNTER_SUFFIX, requires_grad=False)
        count += 1
    return count


def is_dropout_counter(name):
    return name.endswith(COUNTER_SUFFIX)
