"""finetune.py with ``image_resize_schedule`` (issue #29): epochs 1-2 train at 32 px, epoch 3 at 48 px, validation at
``image_resize`` 48; a run stopped at the switch (after epoch 2) and resumed ends bitwise as the uninterrupted one
(GRAPH mode, MobileNetV3 with its seeded dropout; a constant lr, so a run cut short at epoch 2 is the first two
epochs of the 3-epoch run)."""
import csv

from conftest import TINY_TRAIN_ARGS, run_script

import mindspore as ms
import numpy as np

MODEL = "mobilenet_v3_small_100"
ARGS = [*TINY_TRAIN_ARGS, "--scheduler", "constant", "--image_resize", 48, "--image_resize_schedule", "0:32", "2:48"]


def weights(path):
    return {k: v.asnumpy() for k, v in ms.load_checkpoint(str(path)).items() if hasattr(v, "asnumpy")}


def losses(folder):
    with open(folder / "results.csv", encoding="utf-8") as f:
        return [(row["epoch"], row["train_loss"], row["top1"]) for row in csv.DictReader(f)]


def test_sizes_switch_at_the_epoch_boundary_and_a_resume_at_the_switch_is_exact(tiny_aircraft, tmp_path):
    whole = run_script("finetune.py", "--data_dir", tiny_aircraft, *ARGS, "--epoch_size", 3,
                       "--ckpt_save_dir", tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    assert "image_resize_schedule: epoch 1 trains at 32 px" in whole.stdout
    assert "image_resize_schedule: epoch 3 trains at 48 px" in whole.stdout
    cut = run_script("finetune.py", "--data_dir", tiny_aircraft, *ARGS, "--epoch_size", 2,
                     "--ckpt_save_dir", tmp_path / "cut")
    assert cut.returncode == 0 and "trains at 48 px" not in cut.stdout, cut.stderr
    resumed = run_script("finetune.py", "--data_dir", tiny_aircraft, *ARGS, "--epoch_size", 3,
                         "--resume", tmp_path / "cut" / "resume.ckpt")
    assert resumed.returncode == 0, resumed.stderr
    assert "image_resize_schedule: epoch 3 trains at 48 px" in resumed.stdout
    assert losses(tmp_path / "cut") == losses(tmp_path / "whole")
    mine, theirs = weights(tmp_path / "cut" / f"{MODEL}_last.ckpt"), weights(tmp_path / "whole" / f"{MODEL}_last.ckpt")
    assert mine.keys() == theirs.keys()
    for name in mine:
        np.testing.assert_array_equal(mine[name], theirs[name], err_msg=name)
