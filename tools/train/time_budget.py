"""``max_time`` (e.g. ``90s``, ``30m``, ``2h``): the run stops before an epoch that would not fit in the budget,
keeping its best checkpoint, and ends as a finished run (``summary.json``, exit 0) -- Lightning's ``max_time``.

* **What counts.** The wall time of the training loop: from the first epoch's start (start-up before it --
  imports, the data check, the model build -- is not counted) through training, validation and checkpoint
  writes, summed over the processes of a resumed run (the resume state carries the time spent; an epoch lost to
  an interruption is not counted).
* **The rule.** After each epoch's last training step, before its validation: with ``train`` the estimate of an
  epoch's training and ``tail`` that of a validated epoch's validation and writes (each the mean of this
  process's epochs after its first, which compiles; before that an earlier process's, else the first itself, an
  overestimate; ``tail`` 0 before any validation), the epoch is the last when ``spent + tail + (train + tail)``
  exceeds the budget: the Trainer then validates it (its ``final_epoch``), so the run ends with a validated
  epoch and its best checkpoint. With ``average_checkpoints`` the averaging's time is kept too: a third of an
  epoch's training and of the train step's compilation (the first epoch's training beyond a later one's) for its
  forward pass over the training data, and a validation; the time spent includes it.
* **Not compressed.** The lr schedule stays the one of ``epoch_size`` epochs, cut where the budget ends (so a
  cosine schedule may not have decayed): set ``epoch_size`` near what fits to get its full decay.
* **Resume.** A run resumed with its budget spent trains no epoch and ends at once (exit 0); to train on, raise
  ``max_time`` (``resume: PATH``, since the run is finished).
"""
import time

from tools.train.callbacks import Callback


def describe_seconds(seconds):
    """``90s``, ``30m``, ``2h``, ``1h30m`` (what a user would type)."""
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, sec = divmod(rest, 60)
    parts = [f"{value}{unit}" for value, unit in ((hours, "h"), (minutes, "m"), (sec, "s")) if value]
    return "".join(parts) or "0s"


def later_or(durations, before):
    """The mean of ``durations`` after the first (a process's first epoch compiles the train step, its first
    validation the evaluation graph; the mean, not the longest: on a shared machine one slow epoch would stop the
    run early); else ``before`` (an earlier process's estimate); else the first itself (an overestimate), or None
    when there is none."""
    if len(durations) > 1:
        return sum(durations[1:]) / (len(durations) - 1)
    if before is not None:
        return before
    return durations[0] if durations else None


class TimeBudget(Callback):
    """Lowers the Trainer's ``final_epoch`` when the next epoch would not fit in ``budget`` seconds; with
    ``averaging`` the time of one more epoch and a compilation is kept for the weight averaging after the last.
    Its state: the seconds spent and the estimates."""

    def __init__(self, budget, averaging=False):
        self.budget, self.averaging = budget, averaging
        self.spent_before = 0.0  # of the run's earlier processes, and their estimates:
        self.before = {"train": None, "tail": None, "compile": None}
        self.train_seconds, self.tail_seconds = [], []  # this process's epochs: training; validation and writes
        self.start = self.epoch_start = self.train_end = None
        self.trainer, self.steps, self.stopped_after = None, None, None
        self.decision = None  # when the last epoch was chosen: the seconds spent then and the estimates used

    def spent(self):
        return self.spent_before + (time.time() - self.start if self.start is not None else 0.0)

    def estimates(self, tails=None):
        """``(train, tail, compile)``: seconds of an epoch's training, of a validated epoch's validation and writes
        (0 before any validation) and of a compilation (the first epoch's training beyond a later one's; 0 unknown)."""
        tail = later_or(self.tail_seconds if tails is None else tails, self.before["tail"])
        train = later_or(self.train_seconds, self.before["train"])
        compile_seconds = (max(self.train_seconds[0] - train, 0.0) if len(self.train_seconds) > 1
                           else self.before["compile"])
        return train, tail or 0.0, compile_seconds or 0.0

    def after_last(self, train, tail, compile_seconds):
        """Seconds kept after the last epoch: the averaging's pass over the training data and the compilation of its
        forward graph (a forward pass, no backward: a third of an epoch's training and of the train step's
        compilation), and its validation."""
        return (train + compile_seconds) / 3 + tail if self.averaging else 0.0

    def state_dict(self):
        """The time spent and the estimates, with the epoch under way (the Trainer writes its state after an
        epoch's validation, before ``on_epoch_end``)."""
        tails = self.tail_seconds + ([time.time() - self.train_end] if self._validated_since_training() else [])
        train, tail, compile_seconds = self.estimates(tails)
        return {"spent": self.spent(), "train": train, "tail": tail if tails or self.before["tail"] else None,
                "compile": compile_seconds}

    def load_state_dict(self, state):
        self.spent_before = state["spent"]
        self.before = {key: state[key] for key in ("train", "tail", "compile")}

    def _validated_since_training(self):
        rows = self.trainer.rows if self.trainer else []
        return self.train_end is not None and bool(rows) and rows[-1].get("top1") is not None

    def on_fit_begin(self, trainer, start_epoch):
        self.start, self.trainer = time.time(), trainer
        if trainer.is_main:
            used = f"; {describe_seconds(self.spent_before)} spent by the run so far" if self.spent_before else ""
            print(f"max_time: {describe_seconds(self.budget)} for the training loop{used}: the run stops before an "
                  f"epoch that would not fit (the lr schedule of epoch_size {trainer.cfg.epoch_size} is cut there, "
                  "not compressed)", flush=True)
        train, tail, compile_seconds = self.estimates()
        after = self.after_last(train, tail, compile_seconds) if train is not None else 0.0
        if train is not None and self.spent() + train + tail + after > self.budget:
            self._stop(trainer, start_epoch - 1, train, tail, after)

    def on_epoch_begin(self, trainer, epoch):
        self.epoch_start, self.train_end = time.time(), None
        self.steps = trainer.train_loader.get_dataset_size()

    def on_step_end(self, trainer, epoch, step, loss):
        """After the epoch's last step, before its validation: is this epoch the last?"""
        if step != self.steps:
            return
        self.train_end = time.time()
        self.train_seconds.append(self.train_end - self.epoch_start)
        train, tail, compile_seconds = self.estimates()
        after = self.after_last(train, tail, compile_seconds)
        if epoch < trainer.final_epoch and self.spent() + tail + train + tail + after > self.budget:
            self._stop(trainer, epoch, train, tail, after)

    def on_epoch_end(self, trainer, epoch, row):
        if row.get("top1") is not None and self.train_end is not None:
            self.tail_seconds.append(time.time() - self.train_end)

    def _stop(self, trainer, last_epoch, train, tail, after):
        trainer.final_epoch = self.stopped_after = last_epoch
        self.decision = {"at_seconds": round(self.spent(), 1), "train_seconds": round(train, 1),
                         "tail_seconds": round(tail, 1), "kept_after_seconds": round(after, 1)}
        if trainer.is_main:
            print(f"max_time: epoch {last_epoch} is the last (of epoch_size {trainer.cfg.epoch_size}): "
                  f"{self.spent():.0f}s of {describe_seconds(self.budget)} spent, an epoch takes about "
                  f"{train + tail:.0f}s", flush=True)

    def on_fit_end(self, trainer):
        trainer.summary_facts["max_time"] = {
            "budget_seconds": self.budget, "behaviour": "stop before an epoch that would not fit (schedule not "
            "compressed)", "spent_seconds": round(self.spent(), 1),
            "stopped_by_budget": self.stopped_after is not None, "last_epoch": self.stopped_after,
            "decision": self.decision, "kept_for_averaging": self.averaging}


def plan_line(cfg):
    """max_time in the dry-run plan (tools.train.wiring.describe)."""
    return (f"max_time: {describe_seconds(cfg.max_time)} for the training loop: the run stops before an epoch that "
            f"would not fit (the lr schedule of epoch_size {cfg.epoch_size} is cut there, not compressed)")


def budget_callbacks(cfg):
    """``[TimeBudget]`` with ``max_time`` set (time kept for ``average_checkpoints``), else ``[]``."""
    return [TimeBudget(cfg.max_time, averaging=bool(cfg.average_checkpoints))] if cfg.max_time else []
