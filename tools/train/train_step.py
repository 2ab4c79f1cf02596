"""The train step: MindCV's ``TrainStep`` (loss scale, EMA, clipping, accumulation) with two of its
gaps closed here, in one place.

* Gradient clipping acts on the gradient that updates the weights: after the mean over data-parallel
  workers (and over accumulated micro-batches), as one process on the global batch would clip it.
  MindCV 0.3.0 clips each worker's own gradient before the mean (MindCV issues #603, #728).
* Loss scaling that checks for overflow (``loss_scale_type: dynamic``, ``drop_overflow_update``)
  also runs on CPU: MindSpore reads Ascend overflow registers there, which CPU kernels lack, so the
  check counts non-finite gradients instead.
* EMA leaves a weight that does not change bitwise unchanged: MindCV computes
  ``ema * f + w * (1 - f)``, which rounds away from ``w`` when ``ema == w``; here ``ema - (ema - w) * (1 - f)``,
  the same average, is exact then (frozen layers, ``freeze_epochs``, BatchNorm statistics kept).
"""
import mindspore as ms
from mindcv.utils.amp import auto_mixed_precision
from mindcv.utils.train_step import TrainStep
from mindcv.utils.trainer_factory import add_loss_network
from mindspore import Tensor, nn, ops

DYNAMIC_SCALE_FACTOR, DYNAMIC_SCALE_WINDOW = 2, 2000  # MindCV's values for loss_scale_type: dynamic

_count_nonfinite = ops.MultitypeFuncGraph("count_nonfinite")
_exact_ema = ops.MultitypeFuncGraph("exact_ema")


@_exact_ema.register("Tensor", "Tensor", "Tensor")
def _exact_ema_tensor(factor, ema_weight, weight):
    return ops.assign(ema_weight, ema_weight - (ema_weight - weight) * (1 - factor))


@_count_nonfinite.register("Tensor")
def _count_nonfinite_tensor(grad):
    return ops.cast(ops.logical_not(ops.isfinite(grad)), ms.float32).sum()


class _ReduceThenClip(nn.Cell):
    """The data-parallel gradient mean, then clipping by global norm."""

    def __init__(self, reducer, clip_value):
        super().__init__()
        self.reducer, self.clip_value = reducer, clip_value

    def construct(self, grads):
        return ops.clip_by_global_norm(self.reducer(grads), self.clip_value)


class SuiteTrainStep(TrainStep):
    """``TrainStep`` whose clipping follows the gradient mean, whose overflow check runs on CPU and whose
    EMA is exact for unchanged weights."""

    def __init__(self, network, optimizer, scale_sense, clip_grad=False, clip_value=15.0, **kwargs):
        super().__init__(network, optimizer, scale_sense, clip_grad=False, **kwargs)
        if clip_grad:  # TrainStep reduces through grad_reducer (GradientAccumulation keeps its own reference)
            self.grad_reducer = _ReduceThenClip(self.grad_reducer, clip_value)
            if self.accumulate_grad:
                self.gradient_accumulation.grad_reducer = self.grad_reducer
        self.count_overflow = ms.get_context("device_target") == "CPU"
        # nothing to scale, check, average or clip: the bare step, as MindCV's create_trainer builds for these
        # settings (TrainStep's scaling by 1 changes no bit, but costs ~150 kernel launches a step on CPU)
        self.plain = (not (self.ema or clip_grad or self.accumulate_grad) and not isinstance(scale_sense, nn.Cell)
                      and float(scale_sense.asnumpy()) == 1.0)

    def construct(self, *inputs):
        if self.plain:
            return nn.TrainOneStepCell.construct(self, *inputs)
        return super().construct(*inputs)

    def ema_update(self):
        self.updates += 1
        factor = self.ema_decay * (1 - ops.exp(-self.updates / 2000))  # MindCV's warm-up of the decay
        return self.hyper_map(ops.partial(_exact_ema, factor), self.ema_weight, self.weights_all)

    def get_overflow_status(self, status, compute_output):
        if self.count_overflow:
            count = ops.addn(self.hyper_map(_count_nonfinite, compute_output))
            if self.is_distributed:
                count = self.allreduce(count)
            return count > 0
        return super().get_overflow_status(status, compute_output)


def overwrite(param, value):
    """Write ``value`` into ``param`` in place. ``Parameter.set_data`` between steps (MindSpore 2.7.2,
    PyNative) leaves a train step that already ran updating the old buffer: from then on the weights
    stop training, silently (reproduced in tests/unit/train/test_techniques.py). ``ops.assign`` keeps the buffer."""
    ops.assign(param, value)


def scale_sense(cfg):
    """The loss scale as MindCV's trainer factory builds it: a fixed Tensor, or an update cell that
    skips overflowed steps (fixed with ``drop_overflow_update``; dynamic, which always skips them).
    ``auto`` is fixed: MindSpore's automatic choice adds a manager only with mixed precision."""
    if cfg.loss_scale_type == "dynamic":
        return nn.DynamicLossScaleUpdateCell(loss_scale_value=cfg.loss_scale, scale_factor=DYNAMIC_SCALE_FACTOR,
                                             scale_window=DYNAMIC_SCALE_WINDOW)
    if cfg.drop_overflow_update:
        return nn.FixedLossScaleUpdateCell(loss_scale_value=cfg.loss_scale)
    return Tensor(cfg.loss_scale, ms.float32)


def build_train_step(cfg, network, loss_fn, optimizer):
    """The train step around ``network``: mixed precision, loss, loss scale, EMA, clipping, accumulation."""
    if cfg.amp_level != "O0":
        auto_mixed_precision(network, cfg.amp_level, cfg.amp_cast_list)
    if hasattr(loss_fn, "loss_network"):  # distillation: its teacher needs the images, so it builds the loss network
        net_with_loss = loss_fn.loss_network(network)
    else:
        net_with_loss = add_loss_network(network, loss_fn, cfg.amp_level)
    train_step = SuiteTrainStep(net_with_loss, optimizer, scale_sense(cfg), ema=cfg.ema, ema_decay=cfg.ema_decay,
                                clip_grad=cfg.clip_grad, clip_value=cfg.clip_value,
                                gradient_accumulation_steps=cfg.gradient_accumulation_steps).set_train()
    for param in train_step.get_parameters():  # MindSpore's GradientAccumulation cell renames what the
        if param.name.startswith("optimizer."):  # optimizer holds (the weights too) to optimizer.<name>
            param.name = param.name[len("optimizer."):]
    return train_step
