"""The training loop: one train step per batch, validation every few epochs (with tools/evaluate/inference.py),
checkpoints and the resume state."""
import hashlib
import math
import os
import signal
import sys
import time

from tools.core import stop_signals
from tools.core.config import option_table
from tools.core.errors import DataError
from tools.datasets.seeded_augment import set_epoch
from tools.evaluate.inference import batches, ema_weights, evaluate
from tools.evaluate.metrics import as_score
from tools.models.seeded_dropout import is_dropout_counter
from tools.report.evaluation import plot_training_curves
from tools.train import tasks
from tools.train.checkpoints import CheckpointSaver, write_json, write_results
from tools.train.progress import Progress
from tools.train.run_files import CURVES_FILE, SUMMARY_FILE

import mindspore as ms


class Trainer:
    """Runs the epochs, validates, tracks the best epoch, calls the callbacks and writes the results table;
    its ``saver`` (:class:`tools.train.checkpoints.CheckpointSaver`) writes the checkpoints and the resume state."""

    def __init__(self, cfg, network, train_step, lrs, class_names, rank=0, callbacks=(), world=1):
        self.cfg, self.network, self.train_step, self.lrs = cfg, network, train_step, lrs
        self.world = world  # data-parallel workers: a step trains batch_size x world images
        self.run_start = time.time()
        self.class_names = class_names
        self.is_main = rank == 0
        self.rows, self.best_top1, self.stale, self.improved = [], None, 0, False
        self.resume_step = (0, 0.0)  # (steps done, their summed loss) of a resumed, unfinished epoch
        self.best_metric = getattr(cfg, "best_metric", "top1")
        self.task = tasks.of(cfg)  # its validation metrics (top1 ... or mAP, F1) fill the results rows
        self.best_value = None  # best_metric's value at the best epoch (best_top1: that epoch's top1)
        self.callbacks = list(callbacks)  # tools.train.callbacks.Callback: hooks at epoch and step boundaries
        self.saver = _checkpoint_saver(cfg, class_names)
        self.summary_facts = {}  # more entries of summary.json (finetune.py: parameter counts, config digest)
        self.final_epoch = None  # epoch_size when the loop starts; a callback may lower it (max_time): validated, last

    @property
    def out_dir(self):
        """The run folder (its saver's: finetune.py points it at the folder the run took)."""
        return self.saver.folder

    def notify(self, event, *args):
        """Call ``event`` (on_epoch_begin, on_step_end, on_epoch_end, on_fit_end) of every callback."""
        for callback in self.callbacks:
            getattr(callback, event)(self, *args)

    def train_epoch(self, loader, epoch, steps):
        """One pass over ``loader``; returns the mean loss. A NaN/Inf loss stops the run.

        The host reads the losses back only at sync points (every ``log_interval`` steps, before a
        recovery state is written, at the epoch's end), so steps run back to back as in MindCV's loop;
        a non-finite loss is then named by its own step, and nothing is saved after it.
        With ``recovery_interval: N`` the resume state is also written every N steps; a run resumed from
        such a state skips the steps it had done (same data order and augmentation) and goes on from there.
        """
        ms.dataset.config.set_seed(self.cfg.seed + epoch)  # the same data order on resume
        set_epoch(loader, epoch)  # and the same augmentation: a function of (seed, epoch, sample index)
        count, total = self.resume_step
        self.resume_step = (0, 0.0)
        progress = Progress(epoch, self.cfg.epoch_size, steps, self.cfg.log_interval, self.cfg.batch_size * self.world,
                            self.run_start, first_step=count, enabled=self.is_main)
        pending = []  # this window's losses, still on the device
        recovery = self.cfg.recovery_interval if self.is_main else 0
        try:
            for images, labels in batches(loader.skip(count) if count else loader):
                pending.append(self.train_step(images, labels))
                count += 1
                progress.step()
                saving = recovery and count % recovery == 0 and count < steps
                if saving or count % self.cfg.log_interval == 0 or count == steps:
                    total = self._sync(pending, epoch, count, total)
                    progress.report(count, total / count)
                if saving:
                    self.save_state(epoch - 1, step=(count, total))
            total = self._sync(pending, epoch, count, total)
        finally:
            progress.close()
        return total / max(count, 1)

    def _sync(self, pending, epoch, count, total):
        """Read back the ``pending`` losses of the steps up to ``count`` (and empty it), stop at a non-finite
        one, tell the callbacks; returns the epoch's new loss sum."""
        first = count - len(pending) + 1
        values = [float(loss.asnumpy()) for loss in pending]
        pending.clear()
        for step, value in enumerate(values, first):
            if not math.isfinite(value):
                raise DataError(f"loss is {value} at epoch {epoch} step {step}; stopping (the best checkpoint "
                                f"so far is kept): lower lr or check the data")
            total += value
            self.notify("on_step_end", epoch, step, value)
        return total

    def fit(self, train_loader, val_loader, start_epoch=1, resume_command=None):
        """Train from ``start_epoch`` to ``epoch_size`` (or an early stop); returns the result rows.

        Ctrl-C or SIGTERM stops it keeping every finished epoch, and prints ``resume_command`` (how to go
        on); a run that ends writes ``summary.json``, which marks it finished (see tools/train/run_folder.py).
        """
        try:
            rows = self._fit(train_loader, val_loader, start_epoch)
        except KeyboardInterrupt as err:
            if self.is_main:
                hint = resume_command or f"--resume auto --ckpt_save_dir {self.out_dir}"
                kept = ("finished epochs are saved" if self.rows else "no epoch finished yet, the last recovery state "
                        "is saved" if self.saver.state_files() else "no epoch finished yet, nothing trained is saved")
                print(f"{stop_signals.how_stopped(getattr(err, 'signum', signal.SIGINT))}; {kept} in {self.out_dir}: "
                      f"continue with {hint}", file=sys.stderr)
            raise
        if self.is_main:
            write_json(os.path.join(self.out_dir, SUMMARY_FILE), {
                "epochs_done": rows[-1]["epoch"] if rows else 0, "epoch_size": self.cfg.epoch_size,
                "early_stop": bool(rows) and rows[-1]["epoch"] < self.final_epoch, "best_top1": self.best_top1,
                "best_checkpoint": self.saver.best_path if self.best_value is not None else None,
                "last_checkpoint": self.saver.last_path, **self._best_and_timing(rows), **self.summary_facts})
        return rows

    def _best_and_timing(self, rows):
        """summary.json's best epoch with its validation metrics, and the mean seconds per epoch (without
        the first epoch, which includes graph compilation, when there are more)."""
        best = next((r for r in rows if r.get(self.best_metric) is not None and r[self.best_metric] == self.best_value),
                    None)
        seconds = [r["seconds"] for r in rows]
        return {"best_metric": self.best_metric, "best_epoch": best["epoch"] if best else None,
                "best_metrics": ({k: best[k] for k in self.task.columns[1:] + self.task.columns[:1]}
                                 if best else None),
                "sec_per_epoch": ((sum(seconds[1:]) / (len(seconds) - 1) if len(seconds) > 1 else seconds[0])
                                  if seconds else None)}

    def _fit(self, train_loader, val_loader, start_epoch):
        steps = train_loader.get_dataset_size()
        self.train_loader = train_loader  # a callback may replace it, as it may train_step (same steps per epoch)
        self.run_start = time.time()
        self.final_epoch = self.cfg.epoch_size
        self.notify("on_fit_begin", start_epoch)
        for epoch in range(start_epoch, self.cfg.epoch_size + 1):
            if epoch > self.final_epoch:
                break
            self.notify("on_epoch_begin", epoch)
            begin = time.time()
            train_loss = self.train_epoch(self.train_loader, epoch, steps)
            row = {"epoch": epoch, "train_loss": train_loss, "lr": self.lrs[min(epoch * steps, len(self.lrs)) - 1]}
            validate = val_loader is not None and (epoch % self.cfg.val_interval == 0 or epoch == self.final_epoch)
            with ema_weights(self.train_step, self.cfg.ema):
                if validate:
                    row.update(evaluate(self.network, val_loader, self.cfg.batch_size, self.task))
                    self.track_best(row)
                row["seconds"] = time.time() - begin
                self.rows.append(row)
                if self.is_main:
                    self._save(epoch, row)
            if self.is_main:
                self.save_state(epoch)
                print(_epoch_line(self.cfg.epoch_size, row, self.task.columns), flush=True)
            self.notify("on_epoch_end", epoch, row)
            if self.cfg.early_stop_patience and self.stale >= self.cfg.early_stop_patience:
                if self.is_main:
                    print(f"early stop: no better val {self.best_metric} in {self.stale} validations "
                          f"(early_stop_patience {self.cfg.early_stop_patience}, early_stop_min_delta "
                          f"{getattr(self.cfg, 'early_stop_min_delta', 0.0):g})")
                break
        self.notify("on_fit_end")
        return self.rows

    def track_best(self, row):
        """Take a validated epoch's ``row``: it is the new best (``improved``; ``best_value``, ``best_top1``
        become its own, ``stale`` 0) when its ``best_metric`` beats the best so far by more than
        early_stop_min_delta; otherwise ``stale`` (validations without a better one) grows by one."""
        value = row[self.best_metric]
        margin = getattr(self.cfg, "early_stop_min_delta", 0.0)
        score = as_score(self.best_metric, value)
        if self.best_value is None or score > as_score(self.best_metric, self.best_value) + margin:
            self.best_value, self.best_top1, self.stale, self.improved = value, row.get("top1"), 0, True
        else:
            self.stale, self.improved = self.stale + 1, False

    def _save(self, epoch, row):
        self.saver.save(self.network, epoch, row, best=row.get("val_loss") is not None and self.improved)
        write_results(self.out_dir, self.rows, self.task.columns)
        plot_training_curves(self.rows, os.path.join(self.out_dir, CURVES_FILE), self.task.headline)

    def save_state(self, epoch, step=(0, 0.0)):
        """Write the resume state: everything a resumed run needs, after ``epoch`` finished epochs and
        ``step`` = (steps done, their summed loss) of the next one: train-step parameters (weights,
        optimizer state, step counter, EMA, dropout counters), the callbacks' ``state_dict()`` and the loop's
        own state (the saver adds its kept epoch checkpoints and writes it atomically)."""
        state = {"epoch": epoch, "rows": self.rows, "best_top1": self.best_top1, "stale": self.stale,
                 "best_metric": self.best_metric, "best_value": self.best_value,
                 "frozen": _frozen_names(self.network), "step": list(step), "model": self.cfg.model,
                 "class_names": list(self.class_names), "inputs": _inputs(self.cfg),
                 "callbacks": {type(callback).__name__: callback.state_dict() for callback in self.callbacks}}
        self.saver.write_state(self.train_step, state)

    def resume(self, resume):
        """Restore from ``resume`` ('auto' or a path); returns the epoch to start from (1 = afresh).

        ``auto`` tries the run's newest state, then the one before it when the newest is damaged.
        """
        if resume != "auto":
            if not os.path.isfile(resume):
                raise DataError(f"resume checkpoint not found: {resume}")
            return self.restore(resume)
        candidates = self.saver.state_files()
        if not candidates:
            print(f"note: resume: auto found no {self.saver.state_path}; starting a new run")
            return 1
        for path in candidates:
            try:
                return self.restore(path)
            except DataError as err:
                print(f"warning: {err}; trying the previous state", file=sys.stderr)
        raise DataError(f"no usable resume state in {self.out_dir}")

    def restore(self, path):
        """Load a resume state; returns the epoch to continue from."""
        params, state = self.saver.read_state(path)
        if state.get("model", self.cfg.model) != self.cfg.model:
            raise DataError(f"{path}: the run was saved with model {state['model']}, this config has "
                            f"{self.cfg.model}; resume with its config")
        if state.get("class_names", list(self.class_names)) != list(self.class_names):
            raise DataError(f"{path}: the run was saved with other classes or another class order "
                            f"({_differ(state['class_names'], list(self.class_names))}); resume with its data")
        saved_inputs = state.get("inputs", _inputs(self.cfg))  # states of earlier versions lack it
        changed = next((key for key in saved_inputs if saved_inputs[key] != _inputs(self.cfg).get(key)), None)
        if changed:
            raise DataError(f"{path}: the run was saved with {changed} {saved_inputs[changed]}, this config has "
                            f"{getattr(self.cfg, changed)}; resume with its config (the weights learnt those inputs)")
        if state["frozen"] != _frozen_names(self.network):
            raise DataError(f"{path}: the run was saved with other frozen layers; resume with its config")
        if state.get("best_metric", "top1") != self.best_metric:
            raise DataError(f"{path}: the run was saved with best_metric {state.get('best_metric', 'top1')}; "
                            "resume with its config")
        dynamic = self.cfg.loss_scale_type == "dynamic"
        params = {name: value for name, value in params.items() if not _from_config(name, dynamic)}
        own = {p.name: p for p in self.train_step.get_parameters()}
        for name, value in params.items():
            if name in own and tuple(value.shape) != tuple(own[name].shape):
                raise DataError(f"{path}: '{name}' has shape {tuple(value.shape)}, this run's "
                                f"{tuple(own[name].shape)}; resume with the run's own config")
        not_loaded, _ = ms.load_param_into_net(self.train_step, params, strict_load=True)
        not_loaded = [name for name in not_loaded if not _from_config(name, dynamic)]
        if not_loaded:
            raise DataError(f"{path}: {len(not_loaded)} training parameters missing (e.g. '{not_loaded[0]}'); "
                            "resume with the run's own config")
        self.rows, self.best_top1, self.stale = state["rows"], state["best_top1"], state["stale"]
        self.best_value = state.get("best_value", self.best_top1)
        self.saver.restore(state)
        saved = state.get("callbacks", {})  # none in a state of an earlier version: the callbacks start anew
        for callback in self.callbacks:
            if type(callback).__name__ in saved:
                callback.load_state_dict(saved[type(callback).__name__])
        self.resume_step = tuple(state.get("step", (0, 0.0)))
        return state["epoch"] + 1


def _differ(saved, now):
    """Where two class lists part: the first position whose names differ, or the counts."""
    for index, (a, b) in enumerate(zip(saved, now)):
        if a != b:
            return f"class {index} was '{a}', is '{b}'"
    return f"{len(saved)} classes then, {len(now)} now"


def _checkpoint_saver(cfg, class_names):
    """The CheckpointSaver of a run's config; keys a hand-made config lacks take the options table's defaults."""
    table = option_table()
    keys = ("keep_checkpoint_max", "ckpt_save_policy", "ckpt_save_interval", "best_metric", "task")
    keep_max, policy, interval, metric, task = (getattr(cfg, key, table[key][0]) for key in keys)
    return CheckpointSaver(cfg.ckpt_save_dir, cfg.model, class_names, keep_max, policy, interval, metric, task)


RESUME_FIXED_INPUTS = ("mean", "std", "tf_same_padding")  # image_resize may change: a CNN fits any size


def _inputs(cfg):
    """What the network's weights learnt to see, which a resumed run must keep (JSON-comparable)."""
    return {key: [float(v) for v in value] if isinstance(value, (list, tuple)) else value
            for key in RESUME_FIXED_INPUTS if (value := getattr(cfg, key, None)) is not None}


def _from_config(name, dynamic_scale=False):
    """Optimizer hyperparameters (lr schedule, momentum, a fixed loss scale): a resumed run takes them from
    its config, so it may change lr or extend epoch_size. A dynamic loss scale is state: it resumes."""
    if name == "scale_sense":
        return not dynamic_scale
    return name.startswith("learning_rate") or name == "momentum"


def _frozen_names(network):
    return sorted(p.name for p in network.get_parameters() if not p.requires_grad and not is_dropout_counter(p.name)
                  and not p.name.endswith(("moving_mean", "moving_variance")))


def weights_digest(network):
    """A short hash of the trainable weights (compares the ranks of a data-parallel run; BatchNorm
    running statistics are not averaged across workers, rank 0's are the ones saved)."""
    digest = hashlib.sha1()
    for param in network.trainable_params():
        digest.update(param.asnumpy().tobytes())
    return digest.hexdigest()[:16]


def _epoch_line(epochs, row, columns):
    """The epoch's line: losses, the task's validation ``columns`` that have a value, lr and time."""
    parts = [f"epoch {row['epoch']}/{epochs}", f"train_loss {row['train_loss']:.4f}"]
    if row.get("val_loss") is not None:
        parts += [f"{key} {row[key]:.4f}" for key in columns if row.get(key) is not None]
    parts += [f"lr {row['lr']:.3g}", f"{row['seconds']:.1f}s"]
    return "  ".join(parts)
