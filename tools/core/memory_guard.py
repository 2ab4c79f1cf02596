"""Stop with one line, not the kernel's silent SIGKILL, when a run is about to exhaust memory.

A model that does not fit (MindCV's bit_resnet50x3 or vit_l32_224 at 224 px on a 24 GiB machine) grows
while MindSpore compiles and runs its first step, until the kernel's OOM killer ends the process with
SIGKILL: no message, nothing a handler can catch. A script calls :func:`watch` in its ``__main__`` (in
the script's own process only: never inside a test runner or a user's program); a daemon thread then
samples, every :data:`INTERVAL` seconds, the machine's available memory (and a cgroup's limit, when one is
set) and this process's resident size. When the headroom falls under :data:`RESERVE_BYTES` (or the
process passes ``memory_limit_gb``) it prints one line naming what runs (set by :func:`describe`) and
ends the process with exit code 1. Finished epochs are on disk already; the run folder is then as after a
Ctrl-C in that epoch, so ``resume: auto`` continues it.
"""
import os
import sys
import threading
import time

GIB = 1024 ** 3
INTERVAL = 0.05  # seconds between samples: a model's growth takes seconds, one sample costs microseconds
RESERVE_BYTES = GIB // 2  # the OOM killer strikes at ~0 available; stop while this much is left
EXIT_CODE = 1

_run = {"what": "this run", "limit_bytes": 0}


def describe(what, limit_gb=0.0):
    """What a stop names (model, batch size, image size) and the process's own limit (0 = none)."""
    _run["what"] = what
    _run["limit_bytes"] = int(limit_gb * GIB)


def _read_number(path):
    try:
        with open(path) as handle:
            text = handle.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _stat_value(path, key):
    try:
        with open(path) as handle:
            for line in handle:
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0


def machine_available(meminfo="/proc/meminfo"):
    """The kernel's MemAvailable in bytes (free memory plus what it can reclaim), or None."""
    try:
        with open(meminfo) as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def cgroup_available(root="/sys/fs/cgroup"):
    """Bytes left under this container's memory limit (cgroup v2 or v1; reclaimable page cache counted as
    free, as ``docker stats`` does), or None when no limit is set."""
    for limit_file, usage_file, stat_file, cache_key in (
            ("memory.max", "memory.current", "memory.stat", "inactive_file"),
            ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes", "memory/memory.stat",
             "total_inactive_file")):
        limit = _read_number(os.path.join(root, limit_file))
        usage = _read_number(os.path.join(root, usage_file))
        if limit is None or usage is None or limit >= 2 ** 60:  # "max" / the v1 "unlimited" sentinel
            continue
        return limit - usage + _stat_value(os.path.join(root, stat_file), cache_key)
    return None


def process_resident(statm="/proc/self/statm"):
    """This process's resident memory in bytes (0 when unknown)."""
    try:
        with open(statm) as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def shortage(available, resident, limit_bytes, reserve=RESERVE_BYTES):
    """The reason to stop now, or None: the process passed its own limit, or the headroom is under ``reserve``."""
    if limit_bytes and resident > limit_bytes:
        return f"this process holds {resident / GIB:.2f} GiB, over memory_limit_gb {limit_bytes / GIB:g}"
    if available is not None and available < reserve:
        return (f"the machine is out of memory ({available / GIB:.1f} GiB left, this process holds "
                f"{resident / GIB:.1f} GiB)")
    return None


def message(reason):
    return (f"error: {_run['what']} needs more memory than it has: {reason}; lower batch_size or image_resize, "
            "choose a smaller model, or stop other programs (stopped before the system's out-of-memory killer)")


def _check_once():
    available = [value for value in (machine_available(), cgroup_available()) if value is not None]
    return shortage(min(available) if available else None, process_resident(), _run["limit_bytes"])


def _watch():
    while True:
        reason = _check_once()
        if reason:
            print(message(reason), file=sys.stderr, flush=True)
            sys.stdout.flush()
            os._exit(EXIT_CODE)  # the main thread may sit in a compiled graph for minutes: no exception reaches it
        time.sleep(INTERVAL)


def watch():
    """Start the guard thread (once per process); call from a script's ``__main__``."""
    if not any(thread.name == "memory-guard" for thread in threading.enumerate()):
        threading.Thread(target=_watch, name="memory-guard", daemon=True).start()
