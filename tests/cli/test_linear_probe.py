"""cache_features: training the head on features cached once gives the same head and results as
freeze_backbone training through the backbone, when augmentation is neutral and each epoch is one
batch of every training image (so data order cannot matter); and its config rules."""
import csv
import os

from conftest import assert_one_line_error, make_tiny_aircraft, run_main, run_script
from tools.core.config import parse_config
from tools.core.errors import UsageError

import mindspore as ms
import numpy as np
import pytest

TRAIN_IMAGES = 5 * 4
# square 28 px images: the training crop (scale 1, ratio 1) is the whole image resized to 32 px,
# as the evaluation transforms (resize 32 / crop_pct 1.0, centre crop 32) make it; no flip, no jitter
ARGS = ["--train_split", "trainval", "--val_split", "test", "--model", "resnet18", "--image_resize", "32",
        "--batch_size", TRAIN_IMAGES, "--epoch_size", "2", "--warmup_epochs", "0", "--lr", "0.01", "--opt", "adamw",
        "--num_parallel_workers", "1", "--log_interval", "1", "--dataset", "", "--mode", "1",
        "--freeze_backbone", "True", "--scale", "1", "1", "--ratio", "1", "1", "--hflip", "0", "--crop_pct", "1.0",
        "--color_jitter", "none"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_tiny_aircraft(str(tmp_path_factory.mktemp("probe") / "data"), per_class={"trainval": 4, "test": 2})


def results(out):
    with open(os.path.join(out, "results.csv"), encoding="utf-8") as f:
        return list(csv.DictReader(f))


def head(out):
    params = ms.load_checkpoint(os.path.join(out, "resnet18_last.ckpt"))
    return {name: params[name].asnumpy() for name in ("classifier.weight", "classifier.bias")}


def test_cached_features_train_the_same_head(data, tmp_path):
    runs = {}
    for cached in (False, True):
        out = str(tmp_path / f"cached_{cached}")
        proc = run_script("finetune.py", "--data_dir", data, *ARGS, "--cache_features", cached, "--ckpt_save_dir", out)
        assert proc.returncode == 0, proc.stderr
        assert ("augmentation is not applied to cached features" in proc.stdout) == cached, proc.stdout
        runs[cached] = (head(out), results(out))
    (plain_head, plain_rows), (cached_head, cached_rows) = runs[False], runs[True]
    assert len(cached_rows) == len(plain_rows) == 2 and plain_rows[-1]["top1"]
    exact, close = ("epoch", "top1", "top5", "lr"), ("train_loss", "val_loss")
    for plain, cached in zip(plain_rows, cached_rows):
        assert [cached[k] for k in exact] == [plain[k] for k in exact]
        np.testing.assert_allclose([float(cached[k]) for k in close], [float(plain[k]) for k in close], rtol=1e-5)
    for name, value in plain_head.items():
        np.testing.assert_allclose(cached_head[name], value, rtol=0, atol=1e-6, err_msg=name)


def test_cache_features_needs_freeze_backbone(data, tmp_path):
    proc = run_main("finetune.py", "--data_dir", data, *ARGS, "--freeze_backbone", "False",
                    "--cache_features", "True", "--ckpt_save_dir", str(tmp_path / "out"))
    assert_one_line_error(proc, "cache_features", "freeze_backbone", code=2)


@pytest.mark.parametrize("flags,key", [(["--freeze_bn_stats", "False"], "freeze_bn_stats"),
                                       (["--mixup", "0.2"], "mixup"), (["--cutmix", "1.0"], "cutmix")])
def test_cache_features_refuses_what_it_cannot_reproduce(flags, key):
    with pytest.raises(UsageError, match=key):
        parse_config(["--cache_features", "True", "--freeze_backbone", "True", *flags], "test")
