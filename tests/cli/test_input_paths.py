"""What the user gave is named as what it is: an empty or folder checkpoint, a folder as config, an epoch_size
whose schedule cannot be held (issue 31, item 5)."""
import os
import shutil

from conftest import TINY_TRAIN_ARGS, assert_one_line_error, run_main


def test_empty_checkpoint_is_named_empty(tiny_aircraft, tmp_path):
    empty = tmp_path / "model.ckpt"
    empty.write_bytes(b"")
    proc = run_main("validate.py", "--data_dir", tiny_aircraft, *TINY_TRAIN_ARGS, "--ckpt_path", empty)
    assert_one_line_error(proc, f"checkpoint {empty} is an empty file (0 bytes)", code=1)


def test_folder_as_checkpoint_names_the_checkpoint_inside(tiny_aircraft, tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run["out"], run)
    proc = run_main("validate.py", "--data_dir", tiny_aircraft, *TINY_TRAIN_ARGS, "--ckpt_path", run)
    line = assert_one_line_error(proc, f"checkpoint {run} is a folder, not a file", code=1)
    assert line.endswith(f"it holds {run / 'mobilenet_v3_small_100_best.ckpt'}: give that file"), line
    os.makedirs(tmp_path / "none")
    proc = run_main("finetune.py", "--data_dir", tiny_aircraft, *TINY_TRAIN_ARGS, "--ckpt_path", tmp_path / "none",
                    "--ckpt_save_dir", tmp_path / "out", "--dry_run", "True")
    line = assert_one_line_error(proc, f"checkpoint {tmp_path / 'none'} is a folder, not a file", code=1)
    assert "holds" not in line


def test_folder_as_config_is_named_a_folder(tmp_path):
    proc = run_main("validate.py", "--config", tmp_path)
    assert_one_line_error(proc, f"config {tmp_path} is a folder, not a file; name a YAML file", code=2)


def test_epoch_size_beyond_any_schedule_names_epoch_size(tiny_aircraft, tmp_path):
    proc = run_main("finetune.py", "--data_dir", tiny_aircraft, *TINY_TRAIN_ARGS, "--epoch_size", "100000000",
                    "--ckpt_save_dir", tmp_path / "out", "--dry_run", "True")
    line = assert_one_line_error(proc, "'epoch_size' 100000000 at 5 steps an epoch makes 500000000 training steps",
                                 "lower epoch_size", code=2)
    assert "batch_size" not in line
    assert not os.path.exists(tmp_path / "out")
