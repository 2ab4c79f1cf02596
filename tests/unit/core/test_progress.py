"""Per-step progress lines (stdout not a terminal): step counts, images/s, elapsed and ETA that agree with
each other; a NaN loss is named by its own step also when the losses are read back every few steps."""
import re

from conftest import TINY_TRAIN_ARGS, assert_one_line_error, run_script

import pytest

FAST = [*TINY_TRAIN_ARGS, "--mode", "1", "--model", "resnet18", "--opt", "momentum"]
STEPS, EPOCHS, BATCH = 5, 2, 8  # 40 tiny training images
LINE = re.compile(r"^epoch (\d+)/(\d+) step (\d+)/(\d+) loss (\S+) images/s (\S+) elapsed (\S+)s eta (\S+)s "
                  r"run_elapsed (\S+)s run_eta (\S+)s$", re.M)


def test_progress_lines_every_log_interval_steps_with_consistent_rate_and_eta(tiny_aircraft, tmp_path):
    proc = run_script("finetune.py", "--data_dir", tiny_aircraft, *FAST, "--log_interval", "2",
                      "--ckpt_save_dir", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    lines = [tuple(m) for m in LINE.findall(proc.stdout)]
    assert [(int(e), int(s)) for e, _, s, *_ in lines] == [(1, 2), (1, 4), (1, 5), (2, 2), (2, 4), (2, 5)]
    run_elapsed = []
    for epoch, epochs, step, steps, loss, rate, elapsed, eta, run_el, run_eta in lines:
        epoch, step, rate, elapsed, eta = int(epoch), int(step), float(rate), float(elapsed), float(eta)
        assert (int(epochs), int(steps)) == (EPOCHS, STEPS) and float(loss) > 0
        per_step = elapsed / step
        # one decimal printed: the true elapsed time lies within 0.05 s of the printed one, so the printed
        # rate lies between the rates of those two bounds (up to its own rounding)
        slowest, fastest = BATCH * step / (elapsed + 0.05), BATCH * step / max(elapsed - 0.05, 1e-3)
        assert slowest - 0.05 <= rate <= fastest + 0.05, (rate, elapsed, step)
        assert eta == pytest.approx(per_step * (STEPS - step), abs=0.1 + 0.05 * eta)
        assert float(run_eta) == pytest.approx(per_step * (STEPS - step + (EPOCHS - epoch) * STEPS),
                                               abs=0.1 + 0.05 * float(run_eta))
        assert float(run_el) >= elapsed - 0.1
        run_elapsed.append(float(run_el))
    assert run_elapsed == sorted(run_elapsed)
    assert [float(line[7]) for line in lines if line[2] == "5"] == [0.0, 0.0]       # no time left at the end


def test_nan_loss_is_named_by_its_step_whatever_the_log_interval(tiny_aircraft, tmp_path):
    errors = []
    for interval in ("1", "100"):
        proc = run_script("finetune.py", "--data_dir", tiny_aircraft, *FAST, "--epoch_size", "1", "--lr", "1e30",
                          "--log_interval", interval, "--ckpt_save_dir", tmp_path / interval)
        errors.append(assert_one_line_error(proc, "at epoch 1 step", "best checkpoint", code=1))
        assert "loss is nan" in errors[-1] or "loss is inf" in errors[-1], errors[-1]
    steps = [re.search(r"at epoch 1 step (\d+)", line).group(1) for line in errors]
    assert steps[0] == steps[1], errors
