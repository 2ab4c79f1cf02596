"""Image files given on the command line: discovery and a dataset over them.

The dataset is the one ``tools.datasets.loader.open_split`` builds for a split (:class:`ImageFiles`): every file
checked up front, an unreadable one skipped with a warning naming it, GIF/WebP/... re-encoded, and
``paths`` in dataset order, so predictions line up with file names.
"""
import os

from tools.core.errors import DataError
from tools.datasets.image_check import IMAGE_EXTENSIONS
from tools.datasets.image_files import ImageFiles, image_dataset
from tools.datasets.loader import SplitData

UNKNOWN_LABEL = -1
INPUT_NAME = "--input"  # stands for the split name in warnings


def find_images(inputs):
    """Files named in ``inputs`` (whatever their extension) and the image files under its folders
    (recursive, sorted; hidden files and folders, names starting with '.', left out as in training), in
    the order given; a path that does not exist is an error."""
    found = []
    for path in inputs:
        if os.path.isfile(path):
            found.append(path)
        elif os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found += [os.path.join(root, name) for name in sorted(files)
                          if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")]
        else:
            raise DataError(f"input not found: {path}")
    if not found:
        raise DataError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {', '.join(inputs)}")
    return found


def input_split(cfg, paths, class_names):
    """A :class:`SplitData` over ``paths`` in order, labels unknown (-1), for ``tools.datasets.loader.build_loader``."""
    source = ImageFiles(paths, [UNKNOWN_LABEL] * len(paths), class_names, INPUT_NAME, cfg.skip_bad_images,
                        cfg.max_bad_images)
    dataset = image_dataset(source, shuffle=False, num_parallel_workers=cfg.num_parallel_workers)
    return SplitData(dataset, source.class_names, len(source), "files", source.paths, source.skipped,
                     source=source)
