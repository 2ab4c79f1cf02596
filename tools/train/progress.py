"""Per-step training progress users can read: images/s, elapsed time and ETA for the epoch and the run.

On a terminal (stdout and stderr both TTYs) a tqdm bar on stderr that moves every step; otherwise (a log
file, a pipe, a notebook's captured output) one plain line on stdout every ``interval`` steps and at the
epoch's last step, e.g.::

    epoch 2/5 step 40/120 loss 0.8123 images/s 45.3 elapsed 28.3s eta 56.5s run_elapsed 112.9s run_eta 339.2s

The rate counts the steps this process ran in this epoch (a resumed epoch's skipped steps are not timed),
from the epoch's start, so epoch 1's first lines include graph compilation. ``eta`` is the epoch's
remaining steps at that rate; ``run_eta`` adds the remaining epochs' steps (validation not included).
"""
import sys
import time


def on_terminal():
    return sys.stdout.isatty() and sys.stderr.isatty()


class Progress:
    """Progress of one epoch; :meth:`step` after every step, :meth:`report` at the loop's sync points."""

    def __init__(self, epoch, epochs, steps, interval, batch_images, run_start, first_step=0, enabled=True):
        self.epoch, self.epochs, self.steps, self.interval = epoch, epochs, steps, interval
        self.batch_images, self.run_start, self.first_step, self.enabled = batch_images, run_start, first_step, enabled
        self.start = time.time()
        self.bar = None
        if enabled and on_terminal():
            from tqdm import tqdm

            self.bar = tqdm(total=steps, initial=first_step, desc=f"epoch {epoch}/{epochs}", unit="step",
                            file=sys.stderr, dynamic_ncols=True, leave=True)

    def step(self):
        """One more step done (moves the bar; no host sync)."""
        if self.bar is not None:
            self.bar.update(1)

    def figures(self, step, loss):
        """The numbers of a progress line after ``step`` steps of the epoch with running mean ``loss``."""
        now = time.time()
        elapsed, done = now - self.start, step - self.first_step
        per_step = elapsed / done if done else 0.0
        left = self.steps - step
        return {"loss": loss, "images_per_s": self.batch_images / per_step if per_step else 0.0,
                "elapsed": elapsed, "eta": per_step * left, "run_elapsed": now - self.run_start,
                "run_eta": per_step * (left + (self.epochs - self.epoch) * self.steps)}

    def report(self, step, loss):
        """Show the figures after ``step`` steps: the bar's postfix, or a line at every ``interval``-th step
        and at the last."""
        if not self.enabled:
            return
        fig = self.figures(step, loss)
        if self.bar is not None:
            self.bar.set_postfix_str(f"loss {loss:.4f} {fig['images_per_s']:.1f} images/s "
                                     f"run_eta {_clock(fig['run_eta'])}", refresh=False)
        elif step % self.interval == 0 or step == self.steps:
            print(f"epoch {self.epoch}/{self.epochs} step {step}/{self.steps} loss {loss:.4f} "
                  f"images/s {fig['images_per_s']:.1f} elapsed {fig['elapsed']:.1f}s eta {fig['eta']:.1f}s "
                  f"run_elapsed {fig['run_elapsed']:.1f}s run_eta {fig['run_eta']:.1f}s", flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _clock(seconds):
    minutes, sec = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{sec:02d}" if hours else f"{minutes:02d}:{sec:02d}"
