"""Which folder a training run writes to, held for the run's life so that no two runs share one.

* A new run takes ``ckpt_save_dir``, or the first free ``<dir>_N`` beside it when ``<dir>`` holds
  another run (``overwrite: True`` reuses ``<dir>``, removing the files the previous run wrote there).
* :func:`choose` finds the folder reading only, so that every check of the run (its resume state against
  the config, the data, the model) comes before the first write; :func:`take` then locks it and checks
  that a resumed run's state did not change meanwhile.
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
import shutil
import sys
import time

from tools.core.config import update
from tools.core.errors import DataError
from tools.core.fileio import check_writable_dir
from tools.train.run_files import (
    CONFIG_FILE_NAME,
    CURVES_FILE,
    LOCK_FILE,
    PREVIOUS_RESUME_FILE,
    RESULTS_CSV_FILE,
    RESULTS_TABLE_FILE,
    RESUME_FILE,
    SPLIT_DIR,
    SUMMARY_FILE,
    TENSORBOARD_DIR,
)

STATE_FILES = (RESUME_FILE, PREVIOUS_RESUME_FILE)
RUN_FILES = (RESULTS_CSV_FILE, CONFIG_FILE_NAME, SUMMARY_FILE, LOCK_FILE) + STATE_FILES
WRITTEN_FILES = RUN_FILES + (RESULTS_TABLE_FILE, CURVES_FILE)  # with every *.ckpt: what overwrite: True removes
WRITTEN_DIRS = (TENSORBOARD_DIR, SPLIT_DIR)
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
    return "finished" if finished(folder) else "interrupted"


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


def _new_run_folder(base, overwrite, keep=()):
    """Take ``base`` (or the first free ``base_N``) for a new run; returns it."""
    if overwrite:
        if holder(base):
            raise DataError(f"{_in_use(base)}; overwrite: True does not take a running run's folder")
        if not lock(base, fresh=False):
            raise DataError(_in_use(base))
        _remove_previous_run(base, keep)
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


def _remove_previous_run(folder, keep):
    """``overwrite: True``: the files an earlier run wrote in ``folder`` go (none of its checkpoints, state,
    results, figures, events or held-out split can pass for the new run's), except the real paths in
    ``keep`` (what this run reads, e.g. its ckpt_path); other files stay. Says what went in one line."""
    removed = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name == LOCK_FILE or os.path.realpath(path) in keep:
            continue
        if os.path.isfile(path) and (name in WRITTEN_FILES or name.endswith(".ckpt")):
            os.remove(path)
        elif os.path.isdir(path) and name in WRITTEN_DIRS:
            shutil.rmtree(path)
        else:
            continue
        removed.append(name)
    if removed:
        print(f"note: overwrite: True removed the previous run's files in {folder}: {', '.join(removed)}")


def _stamp(folder):
    """What a resumed run read from ``folder`` (its resume states and summary.json: names, sizes, times)."""
    found = []
    for name in STATE_FILES + (SUMMARY_FILE,):
        try:
            info = os.stat(os.path.join(folder, name))
        except FileNotFoundError:
            continue
        found.append((name, info.st_size, info.st_mtime_ns, info.st_ino))
    return found


def finished(folder):
    """Whether the run in ``folder`` ended (its summary.json)."""
    return os.path.isfile(os.path.join(folder, SUMMARY_FILE))


def _taken(folder, rank):
    """Whether another run holds ``folder``; for ranks > 0 one of another job (their rank 0 may hold it already)."""
    owner = holder(folder)
    return bool(owner) and not (rank and owner[1] == job_key())


def choose(cfg, rank=0):
    """Which folder the run will take, reading only (every check of a run comes before its first write):
    for ``resume: PATH`` the folder of that state file, for ``resume: auto`` the newest interrupted run
    (``cfg.resume`` becomes '' when there is none: a new run), refusing a folder in use; sets
    ``cfg.ckpt_save_dir`` to it. Returns what :func:`take` checks again once the folder is locked."""
    check_writable_dir(cfg.ckpt_save_dir, "ckpt_save_dir")
    speak = rank == 0
    if cfg.resume == "auto":
        interrupted = [folder for folder in siblings(cfg.ckpt_save_dir) if status(folder) == "interrupted"
                       or status(folder) == "running" and not _taken(folder, rank)]
        if interrupted:
            if speak:
                print(f"resume: auto continues the interrupted run in {interrupted[-1]}")
            update(cfg, "resume: auto", ckpt_save_dir=interrupted[-1])
        else:
            if speak:
                kinds = {status(f) for f in siblings(cfg.ckpt_save_dir)} - {"free"}
                found = f" ({', '.join(sorted(kinds))} ones are left alone)" if kinds else ""
                print(f"note: resume: auto found no interrupted run in {cfg.ckpt_save_dir} or beside it{found}; "
                      "starting a new run")
            update(cfg, "resume: auto (no interrupted run)", resume="")
    elif cfg.resume:
        if os.path.isdir(cfg.resume):
            raise DataError(f"resume {cfg.resume} is a folder; give its resume.ckpt (or --resume auto "
                            f"--ckpt_save_dir {cfg.resume})")
        if not os.path.isfile(cfg.resume):
            raise DataError(f"resume checkpoint not found: {cfg.resume}")
        folder = os.path.dirname(os.path.abspath(cfg.resume))
        check_writable_dir(folder, "resume")
        if _taken(folder, rank):
            raise DataError(_in_use(folder))
        if speak and os.path.realpath(folder) != os.path.realpath(cfg.ckpt_save_dir):
            print(f"note: resuming the run in {folder} (the folder of {cfg.resume})")
        update(cfg, f"resume: {cfg.resume}", ckpt_save_dir=folder)
    elif cfg.overwrite and holder(cfg.ckpt_save_dir):
        raise DataError(f"{_in_use(cfg.ckpt_save_dir)}; overwrite: True does not take a running run's folder")
    return _stamp(cfg.ckpt_save_dir) if cfg.resume else None


def take(cfg, rank=0, chosen=None):
    """Lock the run's folder (see the module docstring): the one :func:`choose` found (``chosen``, what it
    returned; chosen now when None) for a resumed run, else a new run's; sets and returns ``cfg.ckpt_save_dir``.
    The run's first write: a finished run that is resumed (named) loses its summary.json here, a folder
    that ``overwrite: True`` reuses its previous run's files.
    """
    if chosen is None:
        chosen = choose(cfg, rank)
    if rank:
        named = [cfg.ckpt_save_dir] if cfg.resume else []
        folder = _follow(cfg.ckpt_save_dir, named)
        if cfg.resume and os.path.realpath(folder) != os.path.realpath(cfg.ckpt_save_dir):
            raise DataError(f"rank 0 took {folder}, not {cfg.ckpt_save_dir} whose state this rank resumed")
    elif cfg.resume:
        folder = cfg.ckpt_save_dir
        if not lock(folder, fresh=False):
            raise DataError(_in_use(folder))
        if _stamp(folder) != chosen:
            release(folder)
            raise DataError(f"the run in {folder} changed while this one was starting (another run wrote to it); "
                            "run the command again")
        if finished(folder):  # a finished run, named: it is extended
            os.remove(os.path.join(folder, SUMMARY_FILE))
    else:
        keep = {os.path.realpath(cfg.ckpt_path)} if getattr(cfg, "ckpt_path", "") else set()
        folder = _new_run_folder(cfg.ckpt_save_dir, cfg.overwrite, keep)
    update(cfg, "the run folder taken", ckpt_save_dir=folder)
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
