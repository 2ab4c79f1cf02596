"""Running a network over a loader: the logits of every sample, the metrics of a split, and the EMA weights
swapped in for validation. The Trainer validates with it; validate.py, predict.py, export.py, TTA, the
linear probe's feature cache and the benchmarks run inference with it."""
import signal
from contextlib import contextmanager

from tools.core import stop_signals
from tools.train.train_step import overwrite

import numpy as np
from mindspore import Tensor


def batches(loader, output_numpy=False):
    """One pass over ``loader``, stopping between batches when a stop signal came (see
    :mod:`tools.core.stop_signals`). MindSpore's data engine installs a SIGINT handler that kills the
    process (exit -15, no cleanup) when it starts; Python's is put back once, after the first batch,
    so that Ctrl-C stays a KeyboardInterrupt."""
    iterator = loader.create_tuple_iterator(num_epochs=1, output_numpy=output_numpy)
    handler_restored = False
    while True:
        stop_signals.check()
        try:
            batch = next(iterator)
        except StopIteration:
            return
        finally:
            if not handler_restored:
                signal.signal(signal.SIGINT, signal.default_int_handler)
                handler_restored = True
        yield batch


def predict_logits(network, loader, batch_size):
    """Logits and labels for every sample of ``loader``, in loader order, in inference mode (the
    network's mode is restored after).

    A last, smaller batch is padded to the first batch's size so that GRAPH mode compiles one graph;
    never beyond it (a ``batch_size`` larger than the split would otherwise allocate for nothing).
    """
    was_training = getattr(network, "training", False)  # a MindIR GraphCell has no training mode
    network.set_train(False)
    all_logits, all_labels, full = [], [], None
    for images, labels in batches(loader, output_numpy=True):
        count = len(images)
        full = full or min(count, batch_size)
        if count < full:
            pad = np.zeros((full - count,) + images.shape[1:], images.dtype)
            images = np.concatenate([images, pad])
        out = network(Tensor(images))
        out = out[0] if isinstance(out, (tuple, list)) else out
        all_logits.append(out.asnumpy()[:count].astype(np.float32))
        all_labels.append(labels.astype(np.int64))
    network.set_train(was_training)
    return np.concatenate(all_logits), np.concatenate(all_labels)


def evaluate(network, loader, batch_size, task):
    """The validation metrics of ``task`` (``tools.train.tasks``: val_loss, top1, top5, mean_per_class_acc; or
    val_loss, map, f1) over the whole loader (each image once), keyed as in a results row."""
    return task.validation(*predict_logits(network, loader, batch_size))


@contextmanager
def ema_weights(train_step, enabled):
    """With EMA on, the network holds the EMA weights inside the block (for validation and saving)."""
    if not enabled:
        yield
        return
    live = [(p, p.data.copy()) for p in train_step.weights_all]
    for param, ema in zip(train_step.weights_all, train_step.ema_weight):
        overwrite(param, ema)
    try:
        yield
    finally:
        for param, value in live:
            overwrite(param, value)
