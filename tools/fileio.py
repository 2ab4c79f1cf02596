"""Small file and error idioms shared by every module: atomic writes, one-line error text."""
import io
import os
from contextlib import contextmanager


@contextmanager
def atomic_path(path, suffix=".tmp"):
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename, on
    failure it is removed. A reader (or a killed run) never sees a half-written file."""
    tmp = path + suffix
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path, text):
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def first_line(err):
    """The first non-empty line of an exception's message, or its class name: for one-line errors."""
    text = str(err).strip()
    return text.splitlines()[0] if text else err.__class__.__name__


def read_text_lines(path):
    """The lines of a UTF-8 text file (a BOM is accepted), split at ``\n`` only, line ends kept.

    Text in another encoding is a ``DataError`` naming the file, the line and the offending byte, not a
    ``UnicodeDecodeError`` traceback.
    """
    from tools.errors import DataError

    with open(path, "rb") as f:
        data = f.read()
    try:
        return io.StringIO(data.decode("utf-8-sig")).readlines()
    except UnicodeDecodeError as err:
        lineno = data.count(b"\n", 0, err.start) + 1
        raise DataError(f"{path}:{lineno}: not UTF-8 text (byte 0x{data[err.start]:02x}); "
                        "save the file as UTF-8") from None
