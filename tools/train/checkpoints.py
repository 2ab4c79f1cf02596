"""Writing checkpoints and result tables atomically (temporary file, then rename), and the run folder's
checkpoints and resume state (:class:`CheckpointSaver`).

Checkpoints carry MindSpore's CRC32 (``crc_check=True``), which :func:`tools.models.factory.read_checkpoint`
verifies, so a damaged file is refused instead of loading changed weights.
"""
import csv
import json
import math
import os

from tools.core.errors import DataError
from tools.core.fileio import atomic_path, atomic_write_text
from tools.evaluate.metrics import as_score
from tools.models.factory import CLASS_NAMES_KEY, TASK_KEY, quiet_mindspore_log, read_checkpoint
from tools.train import tasks
from tools.train.run_files import (
    PREVIOUS_RESUME_FILE,
    RESULTS_CSV_FILE,
    RESULTS_TABLE_FILE,
    RESUME_FILE,
    best_checkpoint_name,
    epoch_checkpoint_name,
    last_checkpoint_name,
)

import mindspore as ms

STATE_KEY = "suite_train_state"  # the resume state's entry holding the loop's state (JSON)


def write_checkpoint(cell, tmp, append_dict):
    """``ms.save_checkpoint`` of ``cell`` to the temporary path ``tmp`` (inside :func:`atomic_path`), with a
    CRC. MindSpore writes through a temporary file of its own, left behind when the write fails (a full
    disk); it is removed here, and MindSpore's log line is silenced (the error is one line)."""
    own_tmp = os.path.splitext(tmp)[0] + ".tmp"
    try:
        with quiet_mindspore_log():
            ms.save_checkpoint(cell, tmp, append_dict=append_dict, crc_check=True)
    finally:
        if os.path.exists(own_tmp):
            os.remove(own_tmp)


def save_weights(network, path, class_names, extra=None, task="single"):
    """Save model weights with the class names (and a task other than single-label) inside; atomic, with a CRC."""
    append = {CLASS_NAMES_KEY: json.dumps(list(class_names), ensure_ascii=False)}
    if task != "single":
        append[TASK_KEY] = task
    append.update(extra or {})
    with atomic_path(path, ".tmp.ckpt") as tmp:
        write_checkpoint(network, tmp, append)


write_text = atomic_write_text


def result_columns(metrics):
    """The columns of the results tables around a task's validation ``metrics`` (``tools.train.tasks``)."""
    return ["epoch", "train_loss", *metrics, "lr", "seconds"]


def _fmt(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_results(directory, rows, metrics=tasks.SINGLE.columns):
    """``results.txt`` (aligned table) and ``results.csv`` with one row per epoch: loss, the validation ``metrics``,
    lr and time."""
    columns = result_columns(metrics)
    table = [columns] + [[_fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    text = "\n".join("  ".join(cell.rjust(w) for cell, w in zip(r, widths)) for r in table) + "\n"
    write_text(os.path.join(directory, RESULTS_TABLE_FILE), text)
    csv_path = os.path.join(directory, RESULTS_CSV_FILE)
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: "" if row.get(c) is None else row.get(c) for c in columns})


def write_json(path, data):
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


class CheckpointSaver:
    """The checkpoints of one run folder, and its resume state (as timm's ``CheckpointSaver`` owns a run's
    checkpoint files):

    * ``{model}_last.ckpt`` after every epoch; ``{model}_best.ckpt`` after the best one so far;
    * ``{model}-{epoch}.ckpt`` every ``interval`` epochs, of which ``keep_max`` are kept: the newest
      (``policy`` latest_k) or the best by ``metric`` (top_k; an epoch without validation ranks last,
      a tie keeps the newer);
    * the resume state ``resume.ckpt``, the one before it kept as ``resume_prev.ckpt``. It carries the list
      of kept epoch checkpoints (``saved_epochs``), so that a resumed run rotates the files of its first part.
    """

    def __init__(self, folder, model, class_names, keep_max=10, policy="latest_k", interval=1, metric="top1",
                 task="single"):
        self.folder, self.model, self.class_names, self.task = folder, model, class_names, task
        self.keep_max, self.policy, self.interval, self.metric = keep_max, policy, interval, metric
        self.saved_epochs = []  # (score, epoch, path) of the kept epoch checkpoints, the first to keep first

    @property
    def best_path(self):
        return os.path.join(self.folder, best_checkpoint_name(self.model))

    @property
    def last_path(self):
        return os.path.join(self.folder, last_checkpoint_name(self.model))

    def epoch_path(self, epoch):
        return os.path.join(self.folder, epoch_checkpoint_name(self.model, epoch))

    @property
    def state_path(self):
        return os.path.join(self.folder, RESUME_FILE)

    @property
    def previous_state_path(self):
        return os.path.join(self.folder, PREVIOUS_RESUME_FILE)

    def save(self, network, epoch, row, best=False):
        """The checkpoints after ``epoch`` (its results ``row``): last, best when ``best``, and the epoch's own
        every ``interval`` epochs, deleting the one that falls out of the kept ``keep_max``."""
        extra = {"epoch": epoch}
        save_weights(network, self.last_path, self.class_names, extra, self.task)
        if best:
            save_weights(network, self.best_path, self.class_names, extra, self.task)
        if epoch % self.interval == 0:
            path = self.epoch_path(epoch)
            save_weights(network, path, self.class_names, extra, self.task)
            self._keep(epoch, path, row)

    def _keep(self, epoch, path, row):
        score = -math.inf if row.get(self.metric) is None else as_score(self.metric, row[self.metric])
        self.saved_epochs.append((score, epoch, path))
        if self.policy == "top_k":
            self.saved_epochs.sort(key=lambda item: (-item[0], -item[1]))
        else:
            self.saved_epochs.sort(key=lambda item: -item[1])
        for _, _, old in self.saved_epochs[self.keep_max:]:
            if os.path.exists(old):
                os.remove(old)
        del self.saved_epochs[self.keep_max:]

    def write_state(self, cell, state):
        """Write the resume state: ``cell``'s parameters and the loop's ``state`` (a JSON-able dict), with the
        kept epoch checkpoints added; atomically, the state before becoming ``resume_prev.ckpt``."""
        state = dict(state, saved_epochs=self.saved_epochs)
        with atomic_path(self.state_path, ".tmp.ckpt") as tmp:
            write_checkpoint(cell, tmp, {STATE_KEY: json.dumps(state)})
            if os.path.exists(self.state_path):
                os.replace(self.state_path, self.previous_state_path)

    def state_files(self):
        """The resume states in the folder that exist, newest first (what ``resume: auto`` tries in turn)."""
        return [path for path in (self.state_path, self.previous_state_path) if os.path.isfile(path)]

    def read_state(self, path):
        """``(parameters, state)`` of the resume state file ``path``; a one-line DataError when it is none."""
        params = read_checkpoint(path)
        if STATE_KEY not in params:
            raise DataError(f"{path} is not a resume checkpoint of finetune.py (use ckpt_path to initialise)")
        return params, json.loads(params.pop(STATE_KEY))

    def restore(self, state):
        """Continue the rotation of the run that wrote ``state`` (from :meth:`read_state`). Its files are
        taken in this saver's folder, whatever path the state names: a run folder that was copied or moved
        deletes its own files, never the original run's."""
        self.saved_epochs = [(score, epoch, self.epoch_path(epoch)) for score, epoch, _ in state["saved_epochs"]]
