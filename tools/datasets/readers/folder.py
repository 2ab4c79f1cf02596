"""Folders of class folders: their class order and image files (no MindSpore import: tools stay quick)."""
import os
import tarfile

from tools.core.errors import DataError
from tools.datasets.class_names import CLASSES_FILE, read_names, safe_dirnames

_MAGIC = [(b"PK\x03\x04", "zip"), (b"PK\x05\x06", "zip"), (b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"),
          (b"\xfd7zXZ\x00", "xz"), (b"7z\xbc\xaf\x27\x1c", "7z"), (b"Rar!\x1a\x07", "rar")]
_TAR_OF = {"gzip": "tar.gz", "bzip2": "tar.bz2", "xz": "tar.xz", None: "tar"}


def check_data_dir(path, key="data_dir"):
    """A DataError unless ``path`` is a folder, naming what it is instead (missing, an archive, a file)."""
    if os.path.isdir(path):
        return
    if not os.path.exists(path):
        raise DataError(f"{key} not found: {path}")
    kind = archive_kind(path)
    if kind:
        raise DataError(f"{key} {path} is a {kind} archive: extract it first and set {key} to the folder")
    raise DataError(f"{key} {path} is a file, not a folder of images")


def archive_kind(path):
    """``zip``, ``tar``, ``tar.gz``, ``gzip``, ``7z``, ... by the file's content, or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return None
    kind = next((name for magic, name in _MAGIC if head.startswith(magic)), None)
    if kind in _TAR_OF:
        try:
            return _TAR_OF[kind] if tarfile.is_tarfile(path) else kind
        except (OSError, EOFError):  # a truncated compressed file
            return kind
    return kind


def folder_classes(data_dir, split_dir):
    """``(names, folders)`` of a folder of class folders: ``<data_dir>/classes.txt``, else its sorted folders."""
    names_path = os.path.join(data_dir, CLASSES_FILE)
    if os.path.isfile(names_path):
        names = read_names(names_path)
        return names, safe_dirnames(names)
    folders = sorted(d for d in os.listdir(split_dir)
                     if os.path.isdir(os.path.join(split_dir, d)) and not d.startswith("."))
    return folders, folders


def read_split(data_dir, split, train_names=None):
    """``(paths, labels, class_names)`` of ``<data_dir>/<split>``; a class folder outside the class list is
    an error, and so is a split without class folders.

    ``train_names`` (the training split's) fixes the class order; a split may lack some of its classes.
    """
    split_dir = os.path.join(data_dir, split)
    names, folders = folder_classes(data_dir, split_dir)
    if train_names is not None and train_names != names:
        if set(train_names) >= set(names):
            names, folders = train_names, safe_dirnames(train_names)
        else:
            extra = sorted(set(names) - set(train_names))[0]
            raise DataError(f"class '{extra}' of split '{split}' is not a class of the training split")
    present = [d for d in os.listdir(split_dir)
               if os.path.isdir(os.path.join(split_dir, d)) and not d.startswith(".")]
    unknown = sorted(set(present) - set(folders))
    if unknown:
        raise DataError(f"class folder '{os.path.join(split_dir, unknown[0])}' is not in the class list "
                        f"({os.path.join(data_dir, CLASSES_FILE)} or the training split)")
    if not folders:
        raise DataError(f"no class folders in {split_dir}")
    return (*folder_images(split_dir, folders), names)


def folder_images(split_dir, folders):
    """``(paths, labels)`` of a split tree: class ``folders[i]`` gets label i, its files sorted.

    A class folder's subfolders are read too, as torchvision's ``ImageFolder`` does (linked folders
    followed, once each). A class folder that is missing or empty gives no images; hidden files and folders
    (names starting with '.') are ignored; a broken symbolic link is kept, so that the check names it
    among the skipped files.
    """
    paths, labels = [], []
    for label, folder in enumerate(folders):
        files = sorted(_files_under(os.path.join(split_dir, folder)))
        paths += files
        labels += [label] * len(files)
    return paths, labels


def _files_under(folder_dir):
    """The files (and broken links) under ``folder_dir``, hidden ones and those in hidden folders left out."""
    seen = set()
    for root, dirs, names in os.walk(folder_dir, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a link back up the tree
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            path = os.path.join(root, name)
            if not name.startswith(".") and (os.path.isfile(path) or not os.path.exists(path)):
                yield path
