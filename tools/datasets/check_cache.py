"""The open-time image check, remembered per file and run on every core for new files.

Checking a split decodes every image (~6 ms for a 1 MP JPEG: a minute for 10,000), which every
finetune, validate, predict and resume would pay again. The result of each file is kept under its
absolute path with its size, modification time and CRC-32: a file whose size or mtime changed is checked
again, and so is one whose bytes changed without either (bit rot, a copy that kept the mtime): reading a
file for its CRC costs a small part of decoding it. The CRC also lets the reader
(:class:`tools.datasets.image_files.ImageFiles`) see a file that changes after the check. The cache lives
outside the data folder (datasets are often read-only): one JSON file per split and folder under
``check_cache_dir`` (default ``$XDG_CACHE_HOME`` or ``~/.cache``, then ``mindspore-finetune-suite/image_checks``).
A cache that cannot be read is ignored, one that cannot be written is a warning: the cache only ever saves time.
"""
import hashlib
import json
import multiprocessing
import os
import sys
import zlib

from tools.core.fileio import atomic_path, first_line
from tools.datasets.image_check import check_image

CHECK_VERSION = 3  # bump when tools.datasets.image_check's rules change: older results are then ignored
PARALLEL_MIN = 64  # fewer new files than this are checked in this process
OFF = ("off", "none", "false")


def resolve_dir(value):
    """The cache folder of a ``check_cache_dir`` value: '' = the default, 'off' = no cache (None)."""
    if str(value).strip().lower() in OFF:
        return None
    if value:
        return os.path.expanduser(value)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "mindspore-finetune-suite", "image_checks")


def check_images(paths, split, cache_dir=None, workers=None):
    """``[(ok, reason, needs_conversion, crc), ...]`` of ``paths``, from the cache where the file is unchanged
    (``crc``: CRC-32 of the bytes checked, None when unreadable)."""
    keys = _keys(paths)
    stamps = [_stamp(p) for p in paths]
    cache_path = _cache_file(cache_dir, keys, split) if cache_dir and paths else None
    cached = _load(cache_path) if cache_path else {}
    results, todo = [None] * len(paths), []
    for i, (key, stamp) in enumerate(zip(keys, stamps)):
        entry = cached.get(key)
        if stamp is not None and entry is not None and entry[:2] == list(stamp):
            results[i] = tuple(entry[2:])
        else:
            todo.append(i)
    trusted = [i for i, result in enumerate(results) if result is not None]
    for i, crc in zip(trusted, parallel_map(file_crc, [paths[i] for i in trusted], workers)):
        if crc != results[i][3]:
            todo.append(i)
    todo.sort()
    for i, result in zip(todo, _check_all([paths[i] for i in todo], split, workers)):
        results[i] = tuple(result)
    if cache_path and todo:
        entries = {key: [*stamp, *result] for key, stamp, result in zip(keys, stamps, results) if stamp is not None}
        if entries != cached:
            _save(cache_path, entries)
    return results


def forget(paths, split, cache_dir, all_paths):
    """Drop the entries of ``paths`` from the cache of ``all_paths`` (a split opened with ``check_images``):
    they are checked again at the next open."""
    cache_path = _cache_file(cache_dir, _keys(all_paths), split) if cache_dir and all_paths else None
    cached = _load(cache_path) if cache_path else {}
    gone = set(_keys(paths))
    kept = {key: entry for key, entry in cached.items() if key not in gone}
    if len(kept) != len(cached):
        _save(cache_path, kept)


def file_crc(path):
    """CRC-32 of a file's bytes, None when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return zlib.crc32(f.read())
    except OSError:
        return None


def _keys(paths):
    cwd = os.getcwd()
    return [os.path.join(cwd, p) for p in paths]  # absolute; not normalised: a key only has to be stable


def _stamp(path):
    """``(size, mtime in ns)`` of a file, or None when it cannot be stat'ed (missing, broken link)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _cache_file(cache_dir, keys, split):
    """One file per split name and folder holding its images: a split's re-open reads one file."""
    prefix = os.path.commonprefix([min(keys), max(keys)])  # that of all keys; os.path.commonpath is ~100x slower
    folder = prefix.rpartition(os.sep)[0]
    digest = hashlib.sha1(f"{CHECK_VERSION}\0{folder}\0{split}".encode()).hexdigest()[:20]
    return os.path.join(cache_dir, f"{digest}.json")


def _load(path):
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return data["files"] if data.get("version") == CHECK_VERSION else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _save(path, entries):
    """Write the cache atomically (a per-process temporary name: parallel workers do not collide)."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with atomic_path(path, suffix=f".{os.getpid()}.tmp") as tmp, open(tmp, "w", encoding="utf-8") as f:
            json.dump({"version": CHECK_VERSION, "files": entries}, f)
    except OSError as err:
        print(f"warning: cannot write the image-check cache {path}: {first_line(err)} "
              "(check_cache_dir: another folder, or off)", file=sys.stderr)


def cpu_count():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def parallel_map(fn, items, workers=None):
    """``[fn(item) ...]``, on a process per core when there are many items (fork: nothing is re-imported)."""
    workers = workers or cpu_count()
    if len(items) < PARALLEL_MIN or workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return [fn(item) for item in items]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return pool.map(fn, items, chunksize=max(1, len(items) // (workers * 16)))


def _check_all(paths, split, workers=None):
    if len(paths) >= PARALLEL_MIN:
        print(f"checking {len(paths)} new images of split '{split}' on {workers or cpu_count()} cores", flush=True)
    return parallel_map(_check_one, paths, workers)


def _check_one(path):
    return (*check_image(path), file_crc(path))
