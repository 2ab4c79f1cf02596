"""Class-name files and the folder names made from class names, shared by every layout and by the
scripts that write split trees (``tools/split_aircraft.py``, ``tools/split_folder.py``).

``<data_dir>/classes.txt`` (one name per line, blank lines skipped) fixes the class order of a folder or
list layout; a class name may hold ``/`` (``F-16A/B``), which a folder name cannot.
"""
from tools.core.errors import DataError
from tools.core.fileio import read_text_lines

CLASSES_FILE = "classes.txt"


def read_names(path):
    """Class names from a names file or ``classes.txt``: one per line, blank lines skipped."""
    names = [line.strip() for line in read_text_lines(path) if line.strip()]
    if len(set(names)) != len(names):
        raise DataError(f"{path}: a class name is listed twice")
    return names


def safe_dirname(label):
    """A label made usable as a folder name: ``/`` and ``\\`` become ``_`` (``F-16A/B`` -> ``F-16A_B``)."""
    name = label.replace("/", "_").replace("\\", "_")
    if name in (".", ".."):
        name = name.replace(".", "_")
    return name


def safe_dirnames(names):
    """Folder names for ``names``; two names that would share a folder are an error."""
    folders = [safe_dirname(n) for n in names]
    if len(set(folders)) != len(folders):
        clash = next(f for f in folders if folders.count(f) > 1)
        raise DataError(f"two class names map to the same folder name '{clash}'")
    return folders
