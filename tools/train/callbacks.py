"""Hooks of the Trainer at epoch and step boundaries, so that a technique that acts between epochs
(freeze-then-unfreeze, logging) plugs into the loop instead of editing it.

The Trainer calls, in order: ``on_fit_begin(trainer, start_epoch)`` once before the loop (after a resume's
restore), ``on_epoch_begin(trainer, epoch)`` before an epoch's first step (also the
first epoch of a resumed run), ``on_step_end(trainer, epoch, step, loss)`` for every step, in order, at the
loop's sync points (every ``log_interval`` steps, before a recovery state, at the epoch's end: the losses
are read back from the device there),
``on_epoch_end(trainer, epoch, row)`` after the epoch's validation, checkpoints and resume state
(``row`` is its results row), and ``on_fit_end(trainer)`` when the loop ends (last epoch or early stop).
A callback may replace ``trainer.train_step`` and ``trainer.train_loader`` (with as many batches), and lower
``trainer.final_epoch`` (epoch_size at first): the loop validates that epoch and ends after it (max_time).

A callback that owns state a resumed run needs (Lightning's ``Callback.state_dict``) returns it, JSON-able,
from ``state_dict()``: the Trainer's resume state holds it under the callback's class name, and a resumed
run hands it back to ``load_state_dict(state)`` before its first epoch. A resume state written without it
(an earlier version's) calls nothing: the callback starts as in a new run.
"""


class Callback:
    """Base class: every hook does nothing."""

    def on_fit_begin(self, trainer, start_epoch):
        pass

    def on_epoch_begin(self, trainer, epoch):
        pass

    def on_step_end(self, trainer, epoch, step, loss):
        pass

    def on_epoch_end(self, trainer, epoch, row):
        pass

    def on_fit_end(self, trainer):
        pass

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass
