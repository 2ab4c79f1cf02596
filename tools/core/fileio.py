"""Small file and error idioms shared by every module: atomic writes, output checks, one-line error text."""
import hashlib
import io
import os
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
