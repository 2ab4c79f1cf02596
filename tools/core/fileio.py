"""Small file and error idioms shared by every module: atomic writes, output checks, one-line error text."""
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager

from tools.core.errors import DataError, UsageError


@contextmanager
def atomic_path(path, suffix=".tmp"):
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename, on
    failure it is removed. A reader (or a killed run) never sees a half-written file, and a failed
    write (a full disk) is a one-line DataError that leaves ``path`` as it was."""
    tmp = path + suffix
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(err, OSError):
            raise DataError(f"cannot write {path}: {err.strerror or first_line(err)} (the previous file, if any, "
                            "is kept)") from None
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_folder(path, merge=False):
    """Yield a new temporary folder beside ``path`` to write a whole output (a report, an export) into.
    On success it takes the place of the folder ``path`` (the earlier one is removed only once the new
    one is in place); with ``merge`` its files are moved into ``path`` instead, each in one rename,
    after all of them were written (an export beside its checkpoint). On failure (an exception, a full
    disk) it is removed and ``path`` is as it was: never a mix of two outputs."""
    parent = os.path.dirname(os.path.abspath(path))
    merge = merge and os.path.isdir(path)  # a new folder is made whole, like a replaced one
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(path))}.", suffix=".tmp",
                               dir=path if merge else parent)
        # mkdtemp's 0700 would outlive the rename: the earlier folder's mode, else what the umask gives
        os.chmod(tmp, os.stat(path).st_mode & 0o7777 if os.path.isdir(path) else 0o777 & ~_umask())
    except OSError as err:
        raise DataError(f"cannot write {path}: {err.strerror or first_line(err)}") from None
    try:
        yield tmp
        if merge:
            for name in sorted(os.listdir(tmp)):
                os.replace(os.path.join(tmp, name), os.path.join(path, name))
            os.rmdir(tmp)
        elif os.path.isdir(path):
            old = tmp + ".old"
            os.rename(path, old)
            try:
                os.rename(tmp, path)
            except OSError:
                os.rename(old, path)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError):
            raise DataError(f"cannot write {path}: {err.strerror or first_line(err)} (the previous one, if any, "
                            "is kept)") from None
        raise


def atomic_write_text(path, text):
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def first_line(err):
    """The first informative line of an exception's message, or its class name: for one-line errors.
    MindSpore's messages open with rules (``-----``) and headings (``- Kernel select failed:``)."""
    for line in str(err).splitlines():
        line = line.strip()
        if line.strip("-= ") and not (line.startswith("- ") and line.endswith(":")):
            return line
    return err.__class__.__name__


def check_writable_dir(path, key):
    """Refuse (UsageError, exit 2) an output folder ``path`` (named by option ``key``) that cannot be
    written: empty, a file, under a file, or on a read-only or inaccessible place. Creates nothing."""
    if not str(path).strip():
        raise UsageError(f"'{key}' is empty: name the output folder")
    path = os.path.abspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"'{key}' {path} is a file, not a folder")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UsageError(f"'{key}' {path} is under a file ({existing})")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise UsageError(f"'{key}' {path} cannot be written ({existing}: {err.strerror})") from None


def check_output_file(path, key):
    """Refuse (UsageError, exit 2) an output file ``path`` that is a folder or whose folder cannot be
    written; an empty ``path`` (option not given) passes."""
    if not path:
        return
    if os.path.isdir(path):
        raise UsageError(f"'{key}' {os.path.abspath(path)} is a folder; name a file")
    check_writable_dir(os.path.dirname(os.path.abspath(path)), key)


def data_folders(cfg, splits):
    """The folders of ``cfg``'s data an output must stay out of (:func:`check_outside_data`): the split
    folders ``<data_dir>/<split>`` of ``splits`` that exist, the Aircraft layout's ``images/``, and
    ``data_dir`` itself when it is read as a folder of class folders (no split folder, and no ``splits``
    named or ``val_fraction`` splitting it). A new folder beside the split folders is no split, not data."""
    from tools.datasets.readers.aircraft import IMAGES_DIR  # it imports this module

    data_dir = os.path.abspath(cfg.data_dir)
    folders = [os.path.join(data_dir, s) for s in splits if os.path.isdir(os.path.join(data_dir, s))]
    if not folders and (not splits or cfg.val_fraction):
        folders = [data_dir]
    return folders + [os.path.join(data_dir, IMAGES_DIR)]


def check_outside_data(path, key, folders, files_only=False):
    """Refuse (UsageError, exit 2) an output folder ``path`` that is one of the data ``folders`` (folders
    of class folders or images) or lies inside one: a folder written there would be read as a class, a
    chart as a training image. ``files_only``: the caller writes only files into ``path`` itself, which a
    folder of class folders ignores, so ``path`` may be such a folder (not inside one)."""
    real = os.path.realpath(path)
    for folder in folders:
        folder = os.path.realpath(folder)
        if os.path.commonpath([folder, real]) == folder and not (files_only and real == folder):
            raise UsageError(f"'{key}' {path} is inside the data folder {folder}; choose a folder outside it "
                             "(an output there would be read as data)")


def read_text_lines(path):
    """The lines of a UTF-8 text file (a BOM is accepted), split at ``\n`` only, line ends kept.

    Text in another encoding is a ``DataError`` naming the file, the line and the offending byte, not a
    ``UnicodeDecodeError`` traceback.
    """
    from tools.core.errors import DataError

    with open(path, "rb") as f:
        data = f.read()
    try:
        return io.StringIO(data.decode("utf-8-sig")).readlines()
    except UnicodeDecodeError as err:
        lineno = data.count(b"\n", 0, err.start) + 1
        raise DataError(f"{path}:{lineno}: not UTF-8 text (byte 0x{data[err.start]:02x}); "
                        "save the file as UTF-8") from None


def file_sha256(path):
    """The SHA-256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checkpoint_note(path, ckpt_path, data):
    """Write ``data`` as JSON to ``path`` (atomically), stamped with the checkpoint it was fitted for (its name and
    sha256, so a retrained checkpoint's stale note is recognised); a write error is one line."""
    stamped = {**data, "checkpoint": os.path.basename(ckpt_path), "checkpoint_sha256": file_sha256(ckpt_path)}
    try:
        atomic_write_text(path, json.dumps(stamped, indent=2, ensure_ascii=False) + "\n")
    except OSError as err:
        raise DataError(f"cannot write {path}: {err.strerror or first_line(err)}") from None
    return path


class RejectedNote(ValueError):
    """A checkpoint note whose content cannot be used (its reason is the message)."""


def read_checkpoint_note(path, ckpt_path, read, again, what="fitted"):
    """``read(data)`` of the JSON note ``path`` written by :func:`write_checkpoint_note` for ``ckpt_path``, or None
    when there is none. A note that is unreadable, that ``read`` rejects (:class:`RejectedNote`) or that was
    ``what`` for another version of the checkpoint is ignored with a warning naming it and ``again`` (the command
    that writes it anew)."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        value, digest = read(data), data["checkpoint_sha256"]
    except RejectedNote as err:
        return _ignored(path, f"{err}", again)
    except (OSError, ValueError, KeyError, TypeError) as err:
        return _ignored(path, f"unreadable ({err.__class__.__name__})", again)
    if digest != file_sha256(ckpt_path):
        return _ignored(path, f"it was {what} for another version of {ckpt_path}", again)
    return value


def _ignored(path, reason, again):
    print(f"warning: ignoring {path}: {reason}; run {again} again", file=sys.stderr)


def input_file_problem(path):
    """What keeps ``path`` from being read as an input file, in a few words ('not found', 'a folder',
    'an empty file (0 bytes)'), or None: so an error names what the user gave, not what failed later."""
    if os.path.isdir(path):
        return "a folder, not a file"
    if not os.path.isfile(path):
        return "not found"
    if os.path.getsize(path) == 0:
        return "an empty file (0 bytes)"
    return None
