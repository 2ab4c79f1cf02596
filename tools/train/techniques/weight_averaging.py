"""``average_checkpoints: K``: after the last epoch, the mean of K of the run's epoch checkpoints is written as
``{model}_avg.ckpt`` and validated (timm's ``avg_checkpoints.py``; averaged weights sit in a wider optimum than
any one epoch's).

* **Which K.** The first K of the epoch checkpoints the run keeps (``{model}-{epoch}.ckpt``, the saver's
  ``saved_epochs``): with ``ckpt_save_policy: top_k`` the K best by ``best_metric`` (an epoch without validation
  ranks last), with ``latest_k`` the K newest; ``ckpt_save_interval`` decides which epochs have one. The config
  check refuses K above ``keep_checkpoint_max``; fewer kept than K (a short run) averages those, with a note.
* **Weights.** Every floating-point tensor of the network is the mean of the K checkpoints' (computed in float64,
  stored in the tensor's own type); other tensors (counters) are the newest checkpoint's.
* **BatchNorm.** The mean of running statistics is not the statistics of the mean weights, so every BatchNorm
  layer that updates its statistics in training (not those ``freeze_bn_stats`` keeps) gets them recomputed: one
  pass over the training loader (the last epoch's data order and augmentation) in train mode, no gradient, and
  each layer's mean and variance are the mean over the batches of each batch's statistics (PyTorch's
  ``update_bn``, ``momentum=None``). A batch's statistics are read back from the layer's own update: its running
  statistics are set to 0 before the batch, after which they hold ``momentum`` times the batch's (MindSpore's
  ``moving = (1 - momentum) * moving + momentum * batch``, the cell's ``momentum`` being 1 - the configured one).
* **Validation.** The averaged network is validated like an epoch; its metrics go to the log and to
  ``summary.json`` (``average_checkpoints``). It does not replace ``{model}_best.ckpt``. The network then gets
  its own weights back (the last epoch's), for what follows the run.
* **Resume.** The averaging reads only files the run keeps and the kept list that the resume state carries (the
  saver's), so a resumed run averages the same checkpoints as an uninterrupted one; a run stopped during the
  averaging has no ``summary.json`` yet, and its resume (no epoch left) averages again. This callback has no
  state of its own. In a data-parallel run rank 0 averages, over its shard of the training data.
"""
import os
import time

from tools.datasets.seeded_augment import set_epoch
from tools.evaluate.inference import batches, evaluate
from tools.models.factory import read_checkpoint
from tools.models.norm_layers import batch_norms
from tools.train import tasks
from tools.train.callbacks import Callback
from tools.train.checkpoints import save_weights
from tools.train.run_files import average_checkpoint_name
from tools.train.train_step import overwrite

import mindspore as ms
import numpy as np

AVERAGED_EPOCHS_KEY = "suite_averaged_epochs"  # in {model}_avg.ckpt: the epochs it averages, comma-separated


def mean_weights(network, paths):
    """``{name: numpy array}``: each floating-point parameter of ``network`` averaged over the checkpoints at
    ``paths`` (float64 mean, cast back), the others taken from ``paths[0]`` (the newest or best)."""
    loaded = [read_checkpoint(path) for path in paths]
    out = {}
    for param in network.get_parameters():
        values = [params[param.name].asnumpy() for params in loaded]
        if np.issubdtype(values[0].dtype, np.floating):
            out[param.name] = np.mean(np.stack(values).astype(np.float64), axis=0).astype(values[0].dtype)
        else:
            out[param.name] = values[0]
    return out


def updating_batch_norms(network):
    """The BatchNorm layers whose running statistics a training pass changes (``use_batch_statistics`` not
    False: not kept by ``freeze_bn_stats``; momentum not 1)."""
    return [bn for bn in batch_norms(network) if bn.use_batch_statistics is not False and bn.momentum > 0]


def recompute_batch_norm(network, loader):
    """Replace the running statistics of ``network``'s updating BatchNorm layers by the mean over ``loader``'s
    batches of each batch's mean and variance (train mode, no gradient); returns ``(layers, batches)``, (0, 0)
    without such layers."""
    layers = updating_batch_norms(network)
    if not layers:  # every BatchNorm kept (freeze_bn_stats) or none at all: no pass over the data
        return 0, 0
    sums = [[np.zeros(bn.moving_mean.shape), np.zeros(bn.moving_variance.shape)] for bn in layers]
    count, was_training = 0, network.training
    network.set_train(True)
    try:
        for images, _ in batches(loader):
            for bn in layers:
                for stat in (bn.moving_mean, bn.moving_variance):
                    overwrite(stat, ms.ops.zeros_like(stat))
            network(images)
            for bn, (mean, var) in zip(layers, sums):
                mean += bn.moving_mean.asnumpy().astype(np.float64) / bn.momentum
                var += bn.moving_variance.asnumpy().astype(np.float64) / bn.momentum
            count += 1
    finally:
        network.set_train(was_training)
    for bn, (mean, var) in zip(layers, sums):
        overwrite(bn.moving_mean, ms.Tensor((mean / max(count, 1)).astype(np.float32)))
        overwrite(bn.moving_variance, ms.Tensor((var / max(count, 1)).astype(np.float32)))
    return len(layers), count


def assign_weights(network, values):
    """Write ``values`` ({name: numpy array}) into ``network``'s parameters in place."""
    for param in network.get_parameters():
        if param.name in values:
            overwrite(param, ms.Tensor(values[param.name]))


class WeightAveraging(Callback):
    """At the run's end (rank 0): ``{model}_avg.ckpt``, the mean of ``count`` kept epoch checkpoints with BatchNorm
    statistics recomputed on ``train_loader``, validated on ``val_loader`` (None: not validated)."""

    def __init__(self, count, network, train_loader, val_loader, batch_size, seed, task=tasks.SINGLE):
        self.count, self.network, self.train_loader, self.val_loader = count, network, train_loader, val_loader
        self.batch_size, self.seed, self.task = batch_size, seed, task

    def on_fit_end(self, trainer):
        if not trainer.is_main:
            return
        saver = trainer.saver
        kept = [(epoch, path) for _, epoch, path in saver.saved_epochs[:self.count] if os.path.isfile(path)]
        if not kept:
            print("note: average_checkpoints: no epoch checkpoint kept, nothing averaged", flush=True)
            return
        which = (f"best by {trainer.best_metric}" if saver.policy == "top_k" else "newest")
        if len(kept) < self.count:
            print(f"note: average_checkpoints: {self.count} asked, {len(kept)} epoch checkpoints kept; "
                  f"averaging those", flush=True)
        begin = time.perf_counter()
        own = {param.name: param.asnumpy().copy() for param in self.network.get_parameters()}
        try:
            assign_weights(self.network, mean_weights(self.network, [path for _, path in kept]))
            last_epoch = trainer.rows[-1]["epoch"] if trainer.rows else 1
            ms.dataset.config.set_seed(self.seed + last_epoch)  # the last epoch's data order and augmentation
            set_epoch(self.train_loader, last_epoch)
            layers, count = recompute_batch_norm(self.network, self.train_loader)
            path = os.path.join(saver.folder, average_checkpoint_name(saver.model))
            epochs = [epoch for epoch, _ in kept]
            save_weights(self.network, path, saver.class_names, {AVERAGED_EPOCHS_KEY: ",".join(map(str, epochs))},
                         saver.task)
            metrics = (evaluate(self.network, self.val_loader, self.batch_size, self.task)
                       if self.val_loader is not None else None)
        finally:
            assign_weights(self.network, own)
        seconds = time.perf_counter() - begin
        print(f"average_checkpoints: {path} = the mean of {len(kept)} epoch checkpoints ({which}: epochs "
              f"{', '.join(map(str, epochs))}), BatchNorm statistics of {layers} layers recomputed over "
              f"{count} training batches" + ("; val " + "  ".join(f"{key} {value:.4f}" for key, value in metrics.items()
                                                                 if value is not None) if metrics else "")
              + f" ({seconds:.1f}s)", flush=True)
        trainer.summary_facts["average_checkpoints"] = {
            "checkpoint": path, "epochs": epochs, "chosen": which, "batchnorm_layers": layers,
            "batchnorm_batches": count, "metrics": metrics, "seconds": round(seconds, 1)}


def plan_line(cfg):
    """average_checkpoints in the dry-run plan (tools.train.wiring.describe)."""
    which = f"best by {cfg.best_metric}" if cfg.ckpt_save_policy == "top_k" else "newest"
    return (f"average_checkpoints: after the last epoch, {average_checkpoint_name(cfg.model)} = the mean of the "
            f"{cfg.average_checkpoints} {which} kept epoch checkpoints, BatchNorm statistics recomputed on the "
            "training data, validated")


def averaging_callbacks(cfg, network, train_loader, val_loader):
    """``[WeightAveraging]`` with ``average_checkpoints`` > 0, else ``[]``."""
    if not cfg.average_checkpoints:
        return []
    return [WeightAveraging(cfg.average_checkpoints, network, train_loader, val_loader, cfg.batch_size, cfg.seed,
                            tasks.of(cfg))]

