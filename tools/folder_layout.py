"""Folders of class folders: their class order and image files (no MindSpore import: tools stay quick)."""
import os

from tools import aircraft_layout as layout


def folder_classes(data_dir, split_dir):
    """``(names, folders)`` of a folder of class folders: ``<data_dir>/classes.txt``, else its sorted folders."""
    names_path = os.path.join(data_dir, layout.CLASSES_FILE)
    if os.path.isfile(names_path):
        names = layout.read_names(names_path)
        return names, layout.safe_dirnames(names)
    folders = sorted(d for d in os.listdir(split_dir)
                     if os.path.isdir(os.path.join(split_dir, d)) and not d.startswith("."))
    return folders, folders


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
