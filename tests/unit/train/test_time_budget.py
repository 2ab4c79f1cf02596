"""max_time's rule (tools/train/time_budget.py) through the Trainer on a tiny Dense network, on a fake clock on
which every epoch trains for 10 s and validates in no time (no timed asserts): the epoch it stops after, that
epoch validated, the summary's facts, a resumed run stopping where the uninterrupted one did, a resume with the
budget spent training nothing; and the values max_time accepts."""
import json
import os

from tools.core.config import to_duration
from tools.train import time_budget
from tools.train.callbacks import Callback
from tools.train.time_budget import TimeBudget, describe_seconds

import pytest
from test_val_interval import StopAfter, fit, tiny_trainer, validated


class Clock(Callback):
    """A fake ``time`` module for tools.train.time_budget whose epochs train for ``seconds`` each (after the
    budget's own on_epoch_begin: it comes after it in the callbacks)."""

    def __init__(self, seconds):
        self.now, self.seconds = 1000.0, seconds

    def time(self):
        return self.now

    def on_epoch_begin(self, trainer, epoch):
        self.now += self.seconds


@pytest.fixture
def clock(monkeypatch):
    fake = Clock(10.0)
    monkeypatch.setattr(time_budget, "time", fake)
    return fake


def budget_run(folder, clock, budget=42.0, averaging=False, stop=None, **overrides):
    callbacks = [TimeBudget(budget, averaging), clock] + ([StopAfter(stop)] if stop else [])
    return tiny_trainer(folder, callbacks, epoch_size=100, val_interval=3, **overrides)


def summary(folder):
    with open(os.path.join(folder, "summary.json"), encoding="utf-8") as f:
        return json.load(f)


def test_stops_before_an_epoch_that_would_not_fit_and_validates_the_last(tmp_path, clock, capsys):
    """42 s, 10 s epochs: after epoch 4's training (40 s spent) a fifth would not fit, so epoch 4 is the last and
    is validated although val_interval is 3; the run ends at 40 s, within 10% of the budget."""
    rows = fit(budget_run(tmp_path, clock))
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4] and validated(rows) == [3, 4]
    facts = summary(tmp_path)
    assert facts["epochs_done"] == 4 and facts["early_stop"] is False and os.path.isfile(facts["best_checkpoint"])
    budget = facts["max_time"]
    assert budget["stopped_by_budget"] is True and budget["last_epoch"] == 4
    assert budget["spent_seconds"] == 40.0
    assert budget["decision"] == {"at_seconds": 40.0, "train_seconds": 10.0, "tail_seconds": 0.0,
                                  "kept_after_seconds": 0.0}
    assert 0.9 * 42 <= budget["spent_seconds"] <= 42
    assert "max_time: epoch 4 is the last (of epoch_size 100): 40s of 42s spent" in capsys.readouterr().out


def test_time_kept_for_the_averaging_stops_one_epoch_earlier(tmp_path, clock):
    """A third of an epoch's training kept (no validation time, no compilation on the fake clock): after epoch 3's
    training (30 s spent), 30 + 10 + 3.3 > 42."""
    rows = fit(budget_run(tmp_path, clock, budget=42.0, averaging=True))
    assert [row["epoch"] for row in rows] == [1, 2, 3] and validated(rows) == [3]
    assert summary(tmp_path)["max_time"]["last_epoch"] == 3


def test_with_the_averaging_kept_a_budget_with_room_for_it_trains_on(tmp_path, clock):
    """44 s: after epoch 4's training (40 s) 40 + 10 + 3.3 > 44 (so 4 is the last); after epoch 3's, 43.3 <= 44."""
    rows = fit(budget_run(tmp_path, clock, budget=44.0, averaging=True))
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4]


def test_a_first_epoch_longer_than_the_budget_left_is_the_last(tmp_path, clock):
    rows = fit(budget_run(tmp_path, clock, budget=15.0))
    assert [row["epoch"] for row in rows] == [1] and validated(rows) == [1]


@pytest.mark.parametrize("stop", [2, 3])
def test_a_resumed_run_counts_the_time_spent_before_and_stops_where_the_whole_run_did(tmp_path, clock, stop):
    with pytest.raises(KeyboardInterrupt):
        fit(budget_run(tmp_path, clock, stop=stop))
    clock.now += 500                                                   # time between the processes is not counted
    resumed = budget_run(tmp_path, clock)
    start = resumed.resume("auto")
    assert start == stop + 1
    rows = fit(resumed, start)
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4] and validated(rows) == [3, 4]
    assert summary(tmp_path)["max_time"]["spent_seconds"] == 40.0


def test_a_run_resumed_with_its_budget_spent_trains_no_epoch(tmp_path, clock, capsys):
    fit(budget_run(tmp_path, clock))
    again = budget_run(tmp_path, clock)
    start = again.resume(str(tmp_path / "resume.ckpt"))
    rows = fit(again, start)
    assert start == 5 and [row["epoch"] for row in rows] == [1, 2, 3, 4]
    facts = summary(tmp_path)
    assert facts["epochs_done"] == 4 and facts["max_time"]["last_epoch"] == 4 and facts["early_stop"] is False
    assert "max_time: epoch 4 is the last" in capsys.readouterr().out.splitlines()[-1]


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("30m", 1800), ("2h", 7200), ("1.5h", 5400), ("45", 45),
                                           (1800.0, 1800), ("none", None)])
def test_durations(text, seconds):
    assert to_duration(text) == seconds


@pytest.mark.parametrize("text", ["-1m", "abc", "0", "0s", "inf", "nan", True, "5d"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError, match="expected a duration > 0"):
        to_duration(text)


def test_describe_seconds_reads_as_typed():
    assert [describe_seconds(s) for s in (90, 1800, 5400, 42, 0)] == ["1m30s", "30m", "1h30m", "42s", "0s"]
