"""``tensorboard: True``: the run's scalars as TensorBoard event files in ``<ckpt_save_dir>/tensorboard/``
(written with tensorboardX, which needs no TensorFlow), on rank 0 only.

Scalars (tag, x axis): ``train/loss`` (the running mean of the epoch's loss, every ``log_interval``
steps, x = global step), ``train/lr`` (x = global step), and per epoch (x = epoch) ``train/epoch_loss``,
``val/loss``, ``val/top1``, ``val/top5``, ``val/mean_per_class_acc``, ``time/seconds_per_epoch``.
A resumed run appends a new event file to the same folder; TensorBoard merges them.
"""
import os

from tools.train.callbacks import Callback
from tools.train.run_files import TENSORBOARD_DIR

EPOCH_SCALARS = {"train/epoch_loss": "train_loss", "val/loss": "val_loss", "val/top1": "top1", "val/top5": "top5",
                 "val/mean_per_class_acc": "mean_per_class_acc", "val/map": "map", "val/f1": "f1",
                 "time/seconds_per_epoch": "seconds"}


class TensorBoardLog(Callback):
    """Writes the scalars; the writer is opened at the first epoch, so a dry run writes nothing."""

    def __init__(self, steps_per_epoch, interval):
        self.steps_per_epoch, self.interval = steps_per_epoch, interval
        self.writer, self.total = None, 0.0

    def on_epoch_begin(self, trainer, epoch):
        if self.writer is None:
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(os.path.join(trainer.out_dir, TENSORBOARD_DIR))
        self.total = 0.0

    def on_step_end(self, trainer, epoch, step, loss):
        self.total += loss
        if step % self.interval == 0 or step == self.steps_per_epoch:
            global_step = (epoch - 1) * self.steps_per_epoch + step
            self.writer.add_scalar("train/loss", self.total / step, global_step)
            self.writer.add_scalar("train/lr", trainer.lrs[min(global_step, len(trainer.lrs)) - 1], global_step)

    def on_epoch_end(self, trainer, epoch, row):
        for tag, key in EPOCH_SCALARS.items():
            if row.get(key) is not None:
                self.writer.add_scalar(tag, row[key], epoch)
        self.writer.flush()

    def on_fit_end(self, trainer):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def tensorboard_callbacks(cfg, steps_per_epoch, rank):
    """``[TensorBoardLog]`` on rank 0 with ``tensorboard: True``, else ``[]``."""
    return [TensorBoardLog(steps_per_epoch, cfg.log_interval)] if cfg.tensorboard and rank == 0 else []
