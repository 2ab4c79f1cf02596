"""Ctrl-C (SIGINT) and SIGTERM stop a training run the same way, between two steps, in every mode.

MindSpore's graph runtime replaces the SIGINT handler while a step runs with one that sends the
process SIGTERM (a GRAPH-mode Ctrl-C used to end with exit 143 and no message), and its data engine
installs handlers of its own. So a script calls :func:`route_to_main_thread` before it imports
MindSpore: both signals are then blocked in every thread, one watcher thread takes them with
``sigwaitinfo`` (no MindSpore handler ever sees them) and notes which came. Until the script calls
:func:`between_steps` (before its first write: the config, data and model checks have nothing to keep)
a signal stops the process at once: the main thread is interrupted with :class:`Stopped`, and the process
ended after ``GRACE_SECONDS`` if native code keeps it busy. From then on the training loop calls
:func:`check` between steps, which raises :class:`Stopped`. A second signal ends the process at once.
Forked children (data workers) get the signals unblocked again, with Python's own handlers.
"""
import _thread
import os
import signal
import sys
import threading

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
GRACE_SECONDS = 1.0


class Stopped(KeyboardInterrupt):
    """The run was asked to stop by ``signum``; the process exits with ``128 + signum`` (130, 143)."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


def how_stopped(signum):
    """How a stop line begins: 'interrupted' (Ctrl-C) or 'stopped by SIGTERM'."""
    return "stopped by SIGTERM" if signum == signal.SIGTERM else "interrupted"


_received = []
_at_once = ["before training began: nothing was trained or written"]  # what a stop before between_steps says
_deferred = []  # non-empty once between_steps() was called
_phase = threading.Lock()  # a signal and between_steps() agree on which phase it came in


def _in_child():
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def _raise_stopped(signum, frame):
    raise Stopped(signum)


def _unraisable(info):
    """A :class:`Stopped` raised where Python cannot propagate it (a ``__del__``, a lock's release) would be
    printed as "Exception ignored ..." with a traceback and lost: end the process there, silently."""
    if isinstance(info.exc_value, Stopped):
        _end(info.exc_value.exit_code)
    sys.__unraisablehook__(info)


def _end(code):
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _watch():
    while True:
        signum = signal.sigwaitinfo(STOP_SIGNALS).si_signo
        if _received:
            _end(128 + signum)  # asked twice: the finished epochs are on disk already
        with _phase:
            _received.append(signum)
            at_once = not _deferred
        if at_once:
            print(f"{how_stopped(signum)} {_at_once[0]}", file=sys.stderr,
                  flush=True)
            _thread.interrupt_main(signum)  # runs _raise_stopped in the main thread at its next Python step
            again = signal.sigtimedwait(STOP_SIGNALS, GRACE_SECONDS)
            _end(128 + (again.si_signo if again else signum))


def route_to_main_thread(at_once=None):
    """Call first in a script's ``__main__``, before MindSpore is imported (it starts threads). ``at_once``: what
    a stop before :func:`between_steps` says after 'interrupted' (a script that never calls it: every stop)."""
    if at_once:
        _at_once[0] = at_once
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    for signum in STOP_SIGNALS:  # blocked: only the watcher's interrupt_main calls these
        signal.signal(signum, _raise_stopped)
    os.register_at_fork(after_in_child=_in_child)
    sys.unraisablehook = _unraisable
    threading.Thread(target=_watch, name="stop-signals", daemon=True).start()


def between_steps():
    """From now on (the run's first write) a stop signal is noted and :func:`check` stops the run between
    two steps, keeping what is on disk whole."""
    with _phase:
        _deferred.append(True)
    check()


def check():
    """Raise :class:`Stopped` when a stop signal has come (a no-op in processes that do not route them)."""
    if _received:
        raise Stopped(_received[0])
