"""Every family of ``tools.models.families`` on a real (small, randomly initialised) model: its blocks exist in
the network, its stage split reproduces the network's forward output, its head name names the classifier."""
from tools.models.blocks import block_index, feature_blocks
from tools.models.families import FAMILIES, family_of, head_prefix
from tools.models.stages import split_forward

import mindspore as ms
import numpy as np
import pytest
from mindcv.models import create_model

NUM_CLASSES = 5
# family -> the smallest MindCV model of it (a new family gets a row here)
MODELS = {"MobileNetV2": "mobilenet_v2_035_128", "MobileNetV3": "mobilenet_v3_small_075",
          "ConvNeXt": "convnextv2_atto", "ResNet": "resnet18", "ResNeSt": "resnest14"}


def test_every_family_has_a_model_here():
    assert sorted(f.cls.__name__ for f in FAMILIES) == sorted(MODELS)


@pytest.mark.parametrize("family_name", sorted(MODELS))
def test_family_entries_agree_on_a_real_model(family_name):
    model_name = MODELS[family_name]
    network = create_model(model_name, num_classes=NUM_CLASSES, pretrained=False)
    network.set_train(False)
    family = family_of(network)
    assert family is not None and family.cls.__name__ == family_name

    # the blocks exist, and each stage runs exactly the weights of its block
    cells = dict(network.cells_and_names())
    blocks = feature_blocks(network)
    stages, _ = family.stages(network)
    assert len(stages) == len(blocks) > 1
    assert any(block_index(p.name, blocks) is not None for p in network.get_parameters())
    for i, (block, stage) in enumerate(zip(blocks, stages)):
        assert all(prefix in cells for prefix in block.prefixes), block
        stage_ids = {id(p) for cell in stage for p in cell.get_parameters()}
        block_ids = {id(p) for p in network.get_parameters() if block_index(p.name, blocks) == i}
        assert stage_ids == block_ids, block

    # the split reproduces the network's output, at a cut in the middle
    x = ms.Tensor(np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32))
    front, back = split_forward(network, len(blocks) // 2)
    np.testing.assert_allclose(back(front(x)).asnumpy(), network(x).asnumpy(), rtol=1e-5, atol=1e-5)

    # the head name names the classifier: the parameters producing NUM_CLASSES outputs, outside every block
    head = head_prefix(model_name) + "."
    params = list(network.get_parameters())
    head_params = [p for p in params if p.name.startswith(head)]
    assert head_params and all(block_index(p.name, blocks) is None for p in head_params)
    out_params = [p for p in params if p.shape and p.shape[0] == NUM_CLASSES]
    assert out_params and all(p.name.startswith(head) for p in out_params)

