"""Ctrl-C (SIGINT) and SIGTERM stop a training run the same way, between two steps, in every mode.

MindSpore's graph runtime replaces the SIGINT handler while a step runs with one that sends the
process SIGTERM (a GRAPH-mode Ctrl-C used to end with exit 143 and no message), and its data engine
installs handlers of its own. So a script calls :func:`route_to_main_thread` before it imports
MindSpore: both signals are then blocked in every thread, one watcher thread takes them with
``sigwaitinfo`` (no MindSpore handler ever sees them) and notes which came; the training loop calls
:func:`check` between steps, which raises :class:`Stopped`. A second signal ends the process at once.
Forked children (data workers) get the signals unblocked again.
"""
import os
import signal
import threading

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class Stopped(KeyboardInterrupt):
    """The run was asked to stop by ``signum``; the process exits with ``128 + signum`` (130, 143)."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


_received = []


def _unblock():
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def _watch():
    while True:
        signum = signal.sigwaitinfo(STOP_SIGNALS).si_signo
        if _received:
            os._exit(128 + signum)  # asked twice: the finished epochs are on disk already
        _received.append(signum)


def route_to_main_thread():
    """Call first in a script's ``__main__``, before MindSpore is imported (it starts threads)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    os.register_at_fork(after_in_child=_unblock)
    threading.Thread(target=_watch, name="stop-signals", daemon=True).start()


def check():
    """Raise :class:`Stopped` when a stop signal has come (a no-op in processes that do not route them)."""
    if _received:
        raise Stopped(_received[0])
