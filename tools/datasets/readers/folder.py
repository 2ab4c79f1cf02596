"""Folders of class folders: their class order and image files (no MindSpore import: tools stay quick)."""
import os

from tools.datasets.readers import aircraft as layout


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

    A class folder that is missing or empty gives no images; hidden files and subfolders are ignored;
    a broken symbolic link is kept, so that the check names it among the skipped files.
    """
    paths, labels = [], []
    for label, folder in enumerate(folders):
        folder_dir = os.path.join(split_dir, folder)
        names = sorted(os.listdir(folder_dir)) if os.path.isdir(folder_dir) else []
        files = [os.path.join(folder_dir, n) for n in names if not n.startswith(".")]
        files = [path for path in files if os.path.isfile(path) or not os.path.exists(path)]
        paths += files
        labels += [label] * len(files)
    return paths, labels
