"""ONNX export of the suite's networks, and running an ONNX file with ONNX Runtime.

MindSpore 2.7's ONNX converter has no mapping for some activations the MindCV models use (MobileNetV3's
HSwish and HSigmoid, exact GELU's Erf). :func:`exportable` swaps those cells, for the time of the export,
for the same function written with operators that do map; the swapped network gives the same logits in
MindSpore (tested per operator), and export.py checks the ONNX file against the original network with
ONNX Runtime before it is shipped. An operator with no rewrite here is named by :func:`unsupported_operator`.
"""
import re
from contextlib import contextmanager

from tools.core.errors import DataError
from tools.core.fileio import first_line

import mindspore as ms
from mindspore import nn, ops

ONNXRUNTIME_PIN = "onnxruntime==1.32.0"   # the version of requirements.txt
_ERF = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)   # Abramowitz-Stegun 7.1.26
_ERF_P = 0.3275911


class HardSwish(nn.Cell):
    """``x * relu6(x + 3) / 6``: nn.HSwish in operators ONNX export maps."""

    def construct(self, x):
        return x * ops.relu6(x + 3.0) / 6.0


class HardSigmoid(nn.Cell):
    """``relu6(x + 3) / 6``: nn.HSigmoid in operators ONNX export maps."""

    def construct(self, x):
        return ops.relu6(x + 3.0) / 6.0


class ExactGelu(nn.Cell):
    """``x * Phi(x)`` with the normal CDF from the Abramowitz-Stegun erf formula (error below 2e-7):
    nn.GELU(approximate=False) without Erf (nor Sign), which ONNX export does not map."""

    def construct(self, x):
        z = ops.abs(x) * 0.7071067811865476
        t = 1.0 / (1.0 + _ERF_P * z)
        tail = 0.5 * t * (_ERF[0] + t * (_ERF[1] + t * (_ERF[2] + t * (_ERF[3] + t * _ERF[4])))) * ops.exp(-z * z)
        return ops.relu(x) * (1.0 - tail) - ops.relu(-x) * tail      # tail = 1 - Phi(|x|)


def _rewrite(cell):
    """The exportable replacement of ``cell``, or None when it exports as it is."""
    if isinstance(cell, nn.HSwish):
        return HardSwish()
    if isinstance(cell, nn.HSigmoid):
        return HardSigmoid()
    if isinstance(cell, nn.GELU) and cell.approximate == "none":
        return ExactGelu()       # the tanh form maps as it is
    return None


def _set_child(parent, name, cell):
    if isinstance(parent, (nn.SequentialCell, nn.CellList)):
        parent[list(parent.name_cells()).index(name)] = cell   # keeps their cell list in step
    else:
        setattr(parent, name, cell)


@contextmanager
def exportable(network):
    """Inside the block, ``network``'s cells without an ONNX mapping are replaced by their rewrites; the
    originals are put back after. Yields ``{cell type: count}`` of what was replaced."""
    swapped = []
    for _, parent in list(network.cells_and_names()):
        for name, child in list(parent.name_cells().items()):
            new = _rewrite(child)
            if new is not None:
                new.set_train(child.training)
                _set_child(parent, name, new)
                swapped.append((parent, name, child))
    counts = {}
    for _, _, child in swapped:
        counts[type(child).__name__] = counts.get(type(child).__name__, 0) + 1
    try:
        yield counts
    finally:
        for parent, name, child in reversed(swapped):
            _set_child(parent, name, child)


def unsupported_operator(err):
    """The operator named by MindSpore's "Can not find key X in convert map" export error, or None."""
    found = re.search(r"Can not find key (\w+) in convert map", str(err))
    return found.group(1) if found else None


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise DataError(f"ONNX Runtime is not installed (pip install {ONNXRUNTIME_PIN}): it runs and checks ONNX "
                        "files") from None
    return onnxruntime


class OnnxRuntimeModel:
    """An ONNX file run by ONNX Runtime on CPU, called as a network in inference mode is (a Tensor of images
    in, a Tensor of logits out), so the suite's inference loop (:func:`tools.evaluate.inference.predict_logits`,
    TTA) runs it unchanged."""

    training = False

    def __init__(self, path):
        runtime = _onnxruntime()
        try:
            self.session = runtime.InferenceSession(path, providers=["CPUExecutionProvider"])
        except Exception as err:  # ONNX Runtime's own exception classes derive from Exception alone
            raise DataError(f"cannot load ONNX {path}: {first_line(err)}") from None
        self.input_name = self.session.get_inputs()[0].name
        self.version = runtime.__version__

    def set_train(self, mode=False):
        return self

    def run(self, images):
        """Logits (numpy) of a numpy batch of images."""
        return self.session.run(None, {self.input_name: images})[0]

    def __call__(self, images):
        return ms.Tensor(self.run(images.asnumpy()))
