"""User-facing errors: one clear line and a documented exit code, never a traceback."""
import argparse
import gc
import os
import sys


class UsageError(Exception):
    """Bad flags, config keys or values (exit code 2)."""

    exit_code = 2


class DataError(Exception):
    """Bad input at run time: missing/corrupt file, mismatched checkpoint (exit code 1)."""

    exit_code = 1
    skip_exit_handlers = False  # True: the process must end at once (see run_cli)


class CliParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one-line UsageErrors (exit 2) instead of usage dumps,
    and that never takes an abbreviation (``--mode`` is not ``--modes``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise UsageError(message)


def run_cli(main, argv=None, watch_memory=True):
    """A script's end: ``main(argv or sys.argv[1:])`` with the memory guard watching (one line instead of the
    kernel's out-of-memory SIGKILL), our errors turned into one line on stderr and an exit code."""
    if watch_memory:
        from tools.core import memory_guard

        memory_guard.watch()
    try:
        code = main(sys.argv[1:] if argv is None else argv)
    except (UsageError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        code = err.exit_code
        if getattr(err, "skip_exit_handlers", False):   # e.g. a cluster that never formed: MindSpore's exit
            sys.stdout.flush()                          # handlers would wait, unbounded, on its heartbeat thread
            sys.stderr.flush()
            os._exit(code)
    except KeyboardInterrupt as err:  # Ctrl-C 130; tools.core.stop_signals.Stopped: 128 + signal (SIGTERM 143)
        code = getattr(err, "exit_code", 130)
    # MindSpore Cells left to the interpreter's exit (reference cycles of main()'s networks) make
    # MindSpore print ~175 lines "Exception ignored in Cell.__del__": collect them while it still can.
    gc.collect()
    sys.exit(code or 0)
