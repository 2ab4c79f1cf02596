"""Draw training samples as the model sees them: after augmentation, with their class names.

    python tools/show_batch.py --config CFG [--split trainval] [--n 16] [--out batch.png] [--KEY VALUE ...]

The samples come from the training pipeline finetune.py builds for the config (the same reader,
``create_transforms`` with the config's crop, flip, colour jitter, RandAugment, random erasing, and
mixup/cutmix), one batch of ``--n``; the normalisation (``mean``/``std``) is undone for display. A mixed
sample is titled with its two largest class weights. Every config key can be overridden as in finetune.py.
"""
import os
import sys

if __package__ in (None, ""):  # python tools/x.py: the repository root, not tools/, on sys.path
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from tools.core.config import INT, STR, parse_config
from tools.core.errors import DataError, UsageError, run_cli
from tools.core.fileio import check_outside_data, data_folders
from tools.report.batch_preview import check_figure_path, draw, sample_batch

EXTRA = {"Preview": [
    ("split", "", STR, "split to draw from; empty = train_split"),
    ("n", 16, INT, "number of samples"),
    ("out", "batch.png", STR, "image file to write: .png, .jpg or .jpeg"),
]}


def main(argv=None):
    cfg = parse_config(argv, "Draw training samples after augmentation.", extra=EXTRA)
    if cfg.n < 1:
        raise UsageError(f"'n' must be > 0, got {cfg.n}")
    check_figure_path(cfg.out, "out")
    check_outside_data(os.path.dirname(os.path.abspath(cfg.out)), "out",
                       data_folders(cfg, [cfg.split or cfg.train_split]))  # the figure would be read as an image
    images, names, _ = sample_batch(cfg, cfg.split or cfg.train_split, cfg.n)
    out_dir = os.path.dirname(os.path.abspath(cfg.out))
    try:
        os.makedirs(out_dir, exist_ok=True)
        draw(images, names, cfg.out)
    except OSError as err:
        raise DataError(f"cannot write {cfg.out}: {err.strerror or err}") from None
    print(f"{len(images)} samples of split '{cfg.split or cfg.train_split}' after augmentation written to {cfg.out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
