"""Same seed, same run: at the Aircraft config's settings (2 data workers, RandAugment) two identical commands
give the same results table and weights, and each sample's augmentation does not depend on the worker count."""
import os

from conftest import ROOT, run_script
from tools.core.config import parse_config
from tools.datasets.loader import build_loader, open_split
from tools.datasets.seeded_augment import set_epoch
from tools.evaluate.inference import batches

import mindspore as ms
import numpy as np
import pytest

AIRCRAFT = os.path.join(ROOT, "configs", "mobilenetv3", "mobilenet_v3_small_aircraft.yaml")
# the Aircraft config as it is (mobilenet_v3_small_100, randaug-m7-mstd0.5, hflip, random crops, 8 workers capped
# to the machine's cores), at 32 px, offline and short
AIRCRAFT_TINY = ["--config", AIRCRAFT, "--num_classes", "5", "--pretrained", "False", "--image_resize", "32",
                 "--epoch_size", "2", "--num_parallel_workers", "2", "--log_interval", "100"]


def checkpoint_arrays(path):
    return {k: v.asnumpy() for k, v in ms.load_checkpoint(str(path)).items() if hasattr(v, "asnumpy")}


def results_but_seconds(folder):
    lines = open(os.path.join(folder, "results.csv")).read().splitlines()
    assert lines[0].endswith(",seconds")
    return [line.rsplit(",", 1)[0] for line in lines]


def test_the_same_command_twice_gives_the_same_results_and_weights(tiny_aircraft, tmp_path):
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        proc = run_script("finetune.py", *AIRCRAFT_TINY, "--data_dir", tiny_aircraft, "--ckpt_save_dir", out)
        assert proc.returncode == 0, proc.stderr
    assert results_but_seconds(outs[0]) == results_but_seconds(outs[1])
    for name in ("mobilenet_v3_small_100_last.ckpt", "resume.ckpt"):
        first, second = checkpoint_arrays(outs[0] / name), checkpoint_arrays(outs[1] / name)
        assert first.keys() == second.keys()
        for key in first:
            assert np.array_equal(first[key], second[key]), (name, key)   # bitwise


def epoch_images(data_dir, workers, epoch, **overrides):
    """The training loader's images of one epoch, as finetune.py's train loop draws them."""
    args = ["--config", AIRCRAFT, "--data_dir", data_dir, "--num_classes", "5", "--image_resize", "32",
            "--num_parallel_workers", str(workers)]
    for key, value in overrides.items():
        args += [f"--{key}", str(value)]
    cfg = parse_config(args, "test")
    loader = build_loader(cfg, open_split(cfg, cfg.train_split, training=True), 5, training=True)
    ms.dataset.config.set_seed(cfg.seed + epoch)   # as Trainer.train_epoch does
    set_epoch(loader, epoch)
    return np.concatenate([images for images, _ in batches(loader, output_numpy=True)])


@pytest.mark.parametrize("augmentation", [{}, {"auto_augment": "", "color_jitter": 0.4, "re_prob": 0.5}],
                         ids=["randaugment", "jitter_erasing"])
def test_each_sample_is_augmented_the_same_whatever_the_worker_count(tiny_aircraft, augmentation):
    one, two = epoch_images(tiny_aircraft, 1, 3, **augmentation), epoch_images(tiny_aircraft, 2, 3, **augmentation)
    assert np.array_equal(one, two)
    other_epoch = epoch_images(tiny_aircraft, 2, 4, **augmentation)
    assert one.shape == other_epoch.shape == (40, 3, 32, 32)
    assert not np.array_equal(one, other_epoch)                    # still random: another epoch, other draws
    assert len({image.tobytes() for image in one}) == len(one)
