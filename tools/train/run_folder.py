"""Which folder a training run writes to, held for the run's life so that no two runs share one.

* A new run takes ``ckpt_save_dir``, or the first free ``<dir>_N`` beside it when ``<dir>`` holds
  another run (``overwrite: True`` reuses ``<dir>``).
* ``resume: auto`` continues the newest *interrupted* run among ``<dir>``, ``<dir>_2``, ... (one that
  took its folder, holds no ``summary.json`` and is not running); it never extends a finished run, nor
  outputs without a lock file (an earlier version's or copied ones). With none, it starts a new run.
  ``resume: PATH`` continues the run of that state file in its folder, finished or not (it was named).
* The run holds ``<folder>/.run.lock`` (a POSIX lock, with its pid inside) until the process ends,
  however it ends; the kernel drops the lock of a dead process, so a stale lock file is simply free.
  A second run finds the folder in use and goes to ``<dir>_N`` (or, for a named folder, stops).
* In a data-parallel run, rank 0 takes the folder; the other ranks wait for the folder whose lock
  names their job (msrun's scheduler address) and use it.
"""
import atexit
import fcntl
import os
import re
import shlex
import sys
import time

from tools.core.config import CONFIG_FILE_NAME
from tools.core.errors import DataError
from tools.core.fileio import check_writable_dir

# the files of a run folder (README: "Outputs"); the Trainer (tools/train/trainer.py) and its CheckpointSaver
# (tools/train/checkpoints.py) write them under these names
RESUME_FILE = "resume.ckpt"
PREVIOUS_RESUME_FILE = "resume_prev.ckpt"  # the state before, kept in case the newest is damaged
SUMMARY_FILE = "summary.json"  # written when the run ends (all epochs or an early stop): the run is finished
CURVES_FILE = "training_curves.png"
LOCK_FILE = ".run.lock"
STATE_FILES = (RESUME_FILE, PREVIOUS_RESUME_FILE)
RUN_FILES = ("results.csv", CONFIG_FILE_NAME, SUMMARY_FILE, LOCK_FILE) + STATE_FILES
FOLLOWER_WAIT_SECONDS = 120
LOCK_TRIES = 50

_held = {}  # real path of a lock file -> the descriptor holding it (closing any other descriptor of
#             the same file would drop a POSIX lock, so this process never opens its own lock file twice)
_created = set()  # folders this process made


def job_key():
    """What the processes of one data-parallel job share (msrun's scheduler address), or ''."""
    host, port = os.environ.get("MS_SCHED_HOST", ""), os.environ.get("MS_SCHED_PORT", "")
    return f"{host}:{port}" if port else ""


def holds_run(folder):
    """Whether ``folder`` holds any run's outputs (a run of this suite, of an older version, or a checkpoint)."""
    return os.path.isdir(folder) and any(name in RUN_FILES or name.endswith(".ckpt") for name in os.listdir(folder))


def holder(folder):
    """``(pid, job)`` of the live process holding ``folder``'s lock, or None when it is free."""
    path = os.path.join(folder, LOCK_FILE)
    if os.path.realpath(path) in _held:
        return os.getpid(), job_key()
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lines = os.pread(fd, 4096, 0).decode("utf-8", "replace").splitlines() + ["", ""]
        return (int(lines[0]) if lines[0].isdigit() else None), lines[1]
    finally:
        os.close(fd)  # also drops the probe lock just taken
    return None


def status(folder):
    """'free' (absent, or no run's files), 'running', 'finished', 'interrupted' (a run that took the
    folder and did not end) or 'other' (outputs without a lock file: of an earlier version of the suite,
    copied, or another tool's; never resumed by ``resume: auto`` nor reused by a new run)."""
    if not holds_run(folder):
        return "free"
    names = os.listdir(folder)
    if LOCK_FILE not in names:
        return "other"
    if holder(folder):
        return "running"
    return "finished" if SUMMARY_FILE in names else "interrupted"


def siblings(base):
    """``base`` and the existing ``base_N`` folders (N >= 2), in order of N."""
    parent = os.path.dirname(os.path.abspath(base))
    name = os.path.basename(os.path.abspath(base))
    numbers = []
    if os.path.isdir(parent):
        for entry in os.listdir(parent):
            match = re.fullmatch(re.escape(name) + r"_(\d+)", entry)
            if match and int(match.group(1)) >= 2:
                numbers.append(int(match.group(1)))
    return [base] + [f"{base}_{n}" for n in sorted(numbers)]


def lock(folder, fresh):
    """Take ``folder``'s lock (creating the folder) without waiting; returns whether it was taken. ``fresh``:
    only when no lock file existed (a new run). The lock holds until :func:`release` or the process's end."""
    try:
        os.makedirs(folder)
        _created.add(os.path.realpath(folder))
    except FileExistsError:
        pass
    path = os.path.join(folder, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | (os.O_EXCL if fresh else 0), 0o644)
    except FileExistsError:
        return False
    for attempt in range(LOCK_TRIES):  # another process's holder() probe holds it for an instant
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            if attempt == LOCK_TRIES - 1:
                os.close(fd)
                return False
            time.sleep(0.01)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n{job_key()}\n".encode(), 0)
    _held[os.path.realpath(path)] = fd
    return True


def release(folder):
    """Drop this process's lock on ``folder`` (the end of the process does it too)."""
    fd = _held.pop(os.path.realpath(os.path.join(folder, LOCK_FILE)), None)
    if fd is not None:
        os.close(fd)


@atexit.register
def leave_no_empty_folder():
    """At the end of the process (atexit; tests of in-process runs call it): a run that ended before writing
    anything (a bad input found after the folder was taken) leaves no lock file and no empty folder, so the
    next run takes the same folder."""
    for path in list(_held):
        folder = os.path.dirname(path)
        if not os.path.isdir(folder):  # removed while the run went on: nothing left to tidy (and no traceback)
            release(folder)
            continue
        if os.listdir(folder) == [LOCK_FILE]:
            os.remove(path)
            release(folder)
            if folder in _created:
                os.rmdir(folder)


def _in_use(folder):
    pid = (holder(folder) or (None,))[0]
    return f"{folder} is in use by a running run" + (f" (pid {pid})" if pid else "")


def _new_run_folder(base, overwrite):
    """Take ``base`` (or the first free ``base_N``) for a new run; returns it."""
    if overwrite:
        if holder(base):
            raise DataError(f"{_in_use(base)}; overwrite: True does not take a running run's folder")
        if not lock(base, fresh=False):
            raise DataError(_in_use(base))
        for name in (SUMMARY_FILE,) + STATE_FILES:  # the earlier run's state: a new run must not resume it
            if os.path.exists(os.path.join(base, name)):
                os.remove(os.path.join(base, name))
        return base
    for n in range(1, 10000):
        folder = base if n == 1 else f"{base}_{n}"
        taken = holds_run(folder) if n == 1 else os.path.exists(folder) and bool(os.listdir(folder))
        if not taken and lock(folder, fresh=True):
            if folder != base:
                why = _in_use(base) if holder(base) else f"{base} holds a previous run"
                print(f"note: {why}; writing to {folder} (overwrite: True reuses {base})")
            return folder
    raise DataError(f"no free folder beside {base}")


def _resume_folder(cfg):
    """The folder whose run ``cfg.resume`` continues, locked; None when ``resume: auto`` finds none."""
    if cfg.resume != "auto":
        if not os.path.isfile(cfg.resume):
            raise DataError(f"resume checkpoint not found: {cfg.resume}")
        folder = os.path.dirname(os.path.abspath(cfg.resume))
        check_writable_dir(folder, "resume")
        if not lock(folder, fresh=False):
            raise DataError(_in_use(folder))
        if os.path.realpath(folder) != os.path.realpath(cfg.ckpt_save_dir):
            print(f"note: resuming the run in {folder} (the folder of {cfg.resume})")
        if os.path.exists(os.path.join(folder, SUMMARY_FILE)):  # a finished run, named: it is extended
            os.remove(os.path.join(folder, SUMMARY_FILE))
        return folder
    for _ in range(100):  # another run may take a folder between our look and our lock
        interrupted = [folder for folder in siblings(cfg.ckpt_save_dir) if status(folder) == "interrupted"]
        if not interrupted:
            return None
        if lock(interrupted[-1], fresh=False):
            if not os.path.exists(os.path.join(interrupted[-1], SUMMARY_FILE)):  # it did not finish meanwhile
                print(f"resume: auto continues the interrupted run in {interrupted[-1]}")
                return interrupted[-1]
            release(interrupted[-1])
    raise DataError(f"cannot take an interrupted run beside {cfg.ckpt_save_dir}: other runs keep taking them")


def take(cfg, rank=0):
    """Choose and lock the run's folder (see the module docstring); sets and returns ``cfg.ckpt_save_dir``.

    ``cfg.resume`` becomes '' when ``resume: auto`` finds no interrupted run (the run starts afresh).
    """
    check_writable_dir(cfg.ckpt_save_dir, "ckpt_save_dir")
    if rank:
        named = [os.path.dirname(os.path.abspath(cfg.resume))] if cfg.resume not in ("", "auto") else []
        cfg.ckpt_save_dir = _follow(cfg.ckpt_save_dir, named)
        return cfg.ckpt_save_dir
    folder = _resume_folder(cfg) if cfg.resume else None
    if folder is None:
        if cfg.resume == "auto":
            kinds = {status(f) for f in siblings(cfg.ckpt_save_dir)} - {"free"}
            found = f" ({', '.join(sorted(kinds))} ones are left alone)" if kinds else ""
            print(f"note: resume: auto found no interrupted run in {cfg.ckpt_save_dir} or beside it{found}; "
                  "starting a new run")
        cfg.resume = ""
        folder = _new_run_folder(cfg.ckpt_save_dir, cfg.overwrite)
    cfg.ckpt_save_dir = folder
    return folder


def _follow(base, named):
    """For ranks > 0: the folder rank 0 of the same job locked (waits for it). Without msrun's scheduler
    address to tell jobs apart, the newest folder in use is taken."""
    job, deadline = job_key(), time.time() + FOLLOWER_WAIT_SECONDS
    while time.time() < deadline:
        for folder in reversed(named + siblings(base)):
            owner = holder(folder)
            if owner and owner[1] == job:
                return folder
        time.sleep(0.2)
    raise DataError(f"rank 0 of this job took no folder beside {base} within {FOLLOWER_WAIT_SECONDS} s "
                    "(is ckpt_save_dir on a disk all nodes share?)")


def resume_command(folder, argv=None):
    """The command line that continues this run: the same script and flags with ``--resume auto`` and
    ``--ckpt_save_dir`` naming ``folder``."""
    argv = list(sys.argv if argv is None else argv)
    kept, skip = [], False
    for arg in argv[1:]:
        if skip:
            skip = False
            continue
        if arg in ("--resume", "--ckpt_save_dir", "--overwrite"):
            skip = True
            continue
        if arg.startswith(("--resume=", "--ckpt_save_dir=", "--overwrite=")):
            continue
        kept.append(arg)
    return shlex.join(["python", argv[0], *kept, "--resume", "auto", "--ckpt_save_dir", folder])
