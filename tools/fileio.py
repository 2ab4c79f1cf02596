"""Small file and error idioms shared by every module: atomic writes, one-line error text."""
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

