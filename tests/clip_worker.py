"""Run by tests/cli/test_mindcv_configs.py, under msrun (2 workers) or alone: a few clipped SGD steps of a
small network on a fixed global batch, each worker taking every other sample, one process taking all.
Saves the final weights of the suite's train step and of MindCV's TrainStep to OUT/<kind>_<rank>.npy."""
import os
import sys

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root
from tools.train.train_step import SuiteTrainStep

from mindcv.utils.train_step import TrainStep

STEPS, CLIP = 3, 0.05


def main(out):
    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    rank, shards = 0, 1
    if "MS_WORKER_NUM" in os.environ:
        from mindspore.communication import get_group_size, get_rank, init

        init()
        ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True)
        rank, shards = get_rank(), get_group_size()
    rng = np.random.default_rng(0)
    images = rng.standard_normal((16, 6)).astype(np.float32)
    labels = rng.integers(0, 3, 16).astype(np.int32)
    init = [rng.standard_normal((3, 6)).astype(np.float32), rng.standard_normal(3).astype(np.float32)]
    for kind, step_cls in (("suite", SuiteTrainStep), ("mindcv", TrainStep)):
        net = nn.Dense(6, 3)
        net.weight.set_data(Tensor(init[0]))
        net.bias.set_data(Tensor(init[1]))
        loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
        step = step_cls(nn.WithLossCell(net, loss), nn.SGD(net.trainable_params(), 0.5),
                        scale_sense=Tensor(1.0, ms.float32), clip_grad=True, clip_value=CLIP).set_train()
        for _ in range(STEPS):
            step(Tensor(images[rank::shards]), Tensor(labels[rank::shards]))
        np.save(os.path.join(out, f"{kind}_{rank}.npy"), np.concatenate([net.weight.asnumpy().ravel(),
                                                                      net.bias.asnumpy()]))


if __name__ == "__main__":
    main(sys.argv[1])
