"""tools/evaluate/onnx_export.py: the rewrites for ONNX export compute what the cells they replace compute,
the swap is undone after the export, and the exported files run in ONNX Runtime as in MindSpore."""
import os

from tools.evaluate import onnx_export

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

REWRITTEN = [(nn.HSwish, {}, onnx_export.HardSwish), (nn.HSigmoid, {}, onnx_export.HardSigmoid),
             (nn.GELU, {"approximate": False}, onnx_export.ExactGelu)]
POINTS = np.linspace(-8, 8, 8001, dtype=np.float32).reshape(1, 1, 1, -1)   # both kinks of relu6(x + 3) and the tails


def _export(network, sample, path):
    ms.export(network, ms.Tensor(sample), file_name=str(path), file_format="ONNX")
    return str(path) + ".onnx"


@pytest.mark.parametrize("cls, kwargs, rewrite", REWRITTEN, ids=lambda v: getattr(v, "__name__", ""))
def test_each_rewrite_equals_the_cell_it_replaces(cls, kwargs, rewrite, tmp_path):
    original = cls(**kwargs)
    with onnx_export.exportable(nn.SequentialCell([original])) as counts:
        pass
    assert counts == {cls.__name__: 1}
    expected = original(ms.Tensor(POINTS)).asnumpy()
    np.testing.assert_allclose(rewrite()(ms.Tensor(POINTS)).asnumpy(), expected, rtol=0, atol=1e-6)
    onnx = onnx_export.OnnxRuntimeModel(_export(rewrite(), POINTS, tmp_path / "op"))
    np.testing.assert_allclose(onnx(ms.Tensor(POINTS)).asnumpy(), expected, rtol=0, atol=1e-6)


def test_cells_that_export_as_they_are_are_left():
    network = nn.SequentialCell([nn.GELU(), nn.ReLU6(), nn.SiLU()])     # GELU's tanh form maps
    with onnx_export.exportable(network) as counts:
        assert counts == {}


def test_an_operator_without_rewrite_is_named():
    with pytest.raises(RuntimeError) as err:
        ms.export(nn.ELU(), ms.Tensor(POINTS), file_name="/nonexistent/elu", file_format="ONNX")
    assert onnx_export.unsupported_operator(err.value) == "Elu"
    assert onnx_export.unsupported_operator(ValueError("something else")) is None


def test_mobilenet_v3_exports_and_runs_in_onnx_runtime(tmp_path):
    """The swapped network gives the original's logits in MindSpore, the ONNX file gives them in ONNX Runtime,
    and the original cells are back after the block."""
    from tools.models.mindcv_fixes import create_model_fixed

    network = create_model_fixed(model_name="mobilenet_v3_small_100", num_classes=5, pretrained=False)
    network.set_train(False)
    images = np.random.default_rng(0).normal(size=(1, 3, 64, 64)).astype(np.float32)
    expected = network(ms.Tensor(images)).asnumpy()
    before = [type(cell) for _, cell in network.cells_and_names()]
    with onnx_export.exportable(network) as counts:
        assert counts["HSwish"] > 0 and counts["HSigmoid"] > 0
        assert not any(isinstance(cell, (nn.HSwish, nn.HSigmoid)) for _, cell in network.cells_and_names())
        np.testing.assert_allclose(network(ms.Tensor(images)).asnumpy(), expected, rtol=0, atol=1e-5)
        path = _export(network, images, tmp_path / "mnv3")
    assert [type(cell) for _, cell in network.cells_and_names()] == before
    logits = onnx_export.OnnxRuntimeModel(path)(ms.Tensor(images)).asnumpy()
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-4 * max(1.0, np.abs(expected).max()))


def test_a_bad_onnx_file_is_a_one_line_data_error(tmp_path):
    from tools.core.errors import DataError

    path = tmp_path / "bad.onnx"
    path.write_bytes(b"not onnx")
    with pytest.raises(DataError, match="cannot load ONNX .*bad.onnx") as err:
        onnx_export.OnnxRuntimeModel(str(path))
    assert "\n" not in str(err.value) and os.path.exists(path)


def test_export_py_names_an_operator_it_cannot_export(tmp_path):
    """export.py's ONNX step: a cell without mapping or rewrite (ELU) is one line naming the operator, no file."""
    from argparse import Namespace

    from export import export_one
    from tools.core.errors import DataError

    network = nn.SequentialCell([nn.HSwish(), nn.ELU()])     # HSwish is rewritten, ELU has no rewrite
    cfg = Namespace(model="elu_net", device_target="CPU")
    with pytest.raises(DataError, match="ONNX export is not available for elu_net on CPU: MindSpore .* no ONNX "
                                        "mapping for the operator Elu .*--format MINDIR") as err:
        export_one(network, ms.Tensor(POINTS), str(tmp_path / "net"), "ONNX", cfg)
    assert "\n" not in str(err.value) and os.listdir(tmp_path) == []
    assert isinstance(network[0], nn.HSwish)                   # the rewrite is undone after a failure too
