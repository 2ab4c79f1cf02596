"""The data layouts a split can have, one entry per layout, as ``tools.models.families`` is for models:
``dataset_format``'s values, the layout detection (``tools.datasets.loader``), the data report and the
dry-run plan read this table. A new layout is one reader in ``tools/datasets/readers/`` plus one entry.

An entry says:

* ``name``: its ``dataset_format`` value (and what ``SplitData.layout`` and the dry-run plan show);
* ``pattern``: where a split is, for ``dataset_format``'s help;
* ``found``: ``(cfg, split) -> bool``, whether ``split`` of ``cfg.data_dir`` is in this layout;
* ``missing``: ``(cfg, split) -> str``, the error when ``dataset_format`` names this layout and the split is
  not there; ``expected``: ``(cfg, split) -> str``, the split in this layout, for the "split not found" error;
* ``splits``: ``cfg -> [split names]`` of this layout in ``cfg.data_dir``;
* ``read``: ``(cfg, split, class names of the training split or None) -> (paths, labels, class names)``, the
  reader; ``tools.datasets.loader.open_source`` turns its files into the checked ``ImageFiles``;
* ``read_sets``: the same for multi-label data (``task: multilabel``, labels a multi-hot array), or None when
  the layout cannot hold an image's several labels.

``dataset_format: auto`` takes the first entry that finds the split (a folder, else a list file, else
annotations).
"""
import os
from dataclasses import dataclass
from typing import Callable, Optional

from tools.datasets.readers import aircraft, folder, list_file


@dataclass(frozen=True)
class Layout:
    name: str
    pattern: str
    found: Callable
    missing: Callable
    expected: Callable
    splits: Callable
    read: Callable
    read_sets: Optional[Callable] = None


def list_dir(cfg):
    """Where the list files are: ``list_dir``, else ``data_dir``."""
    return cfg.list_dir or cfg.data_dir


def _folder_splits(cfg):
    """Every folder of ``data_dir`` but Aircraft's ``images/`` (a folder of class folders counts as a split tree)."""
    return [d for d in sorted(os.listdir(cfg.data_dir))
            if os.path.isdir(os.path.join(cfg.data_dir, d)) and d != aircraft.IMAGES_DIR]


FOLDER = Layout(
    "folder", "<data_dir>/<split>/<class>/",
    found=lambda cfg, split: os.path.isdir(os.path.join(cfg.data_dir, split)),
    missing=lambda cfg, split: f"split folder not found: {os.path.join(cfg.data_dir, split)}",
    expected=lambda cfg, split: f"a folder {split}/",
    splits=_folder_splits,
    read=lambda cfg, split, names: folder.read_split(cfg.data_dir, split, names))
LIST = Layout(
    "list", "<split>.csv / <split>.txt",
    found=lambda cfg, split: list_file.list_file(list_dir(cfg), split) is not None,
    missing=lambda cfg, split: f"list file not found: {os.path.join(list_dir(cfg), split)}.csv (or .txt)",
    expected=lambda cfg, split: f"a list file {split}.csv or {split}.txt",
    splits=lambda cfg: list_file.available_splits(list_dir(cfg)),
    read=lambda cfg, split, names: list_file.read_split(
        cfg.data_dir, list_file.list_file(list_dir(cfg), split), cfg.image_column, cfg.label_column, names),
    read_sets=lambda cfg, split, names: list_file.read_label_sets(
        cfg.data_dir, list_file.list_file(list_dir(cfg), split), cfg.label_delimiter, cfg.image_column,
        cfg.label_column, names))
ANNOTATION = Layout(
    "annotation", "images_<level>_<split>.txt",
    found=lambda cfg, split: aircraft.has_annotations(cfg.data_dir, cfg.label_level, split),
    missing=lambda cfg, split: "annotation file not found: "
                               f"{aircraft.annotation_file(cfg.data_dir, cfg.label_level, split)}",
    expected=lambda cfg, split: f"an annotation file images_{cfg.label_level}_{split}.txt",
    splits=lambda cfg: aircraft.available_splits(cfg.data_dir, cfg.label_level),
    read=lambda cfg, split, names: aircraft.read_split(cfg.data_dir, cfg.label_level, split, names))
LAYOUTS = (FOLDER, LIST, ANNOTATION)  # in the order dataset_format: auto tries them
NAMES = tuple(entry.name for entry in LAYOUTS)
FORMAT_HELP = ("(suite) auto, " + ", ".join(f"{entry.name} ({entry.pattern})" for entry in LAYOUTS[:-1])
               + f" or {LAYOUTS[-1].name} ({LAYOUTS[-1].pattern})")


def named(name):
    """The entry whose ``name`` is ``name``."""
    return next(entry for entry in LAYOUTS if entry.name == name)
