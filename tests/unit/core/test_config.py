"""Config resolution: defaults < YAML < CLI, types, unknown keys, saved config."""
from conftest import ROOT, assert_one_line_error, run_main, run_script
from tools.core.config import option_table, parse_config, save_config, update
from tools.core.errors import UsageError

import pytest
import yaml

MINDCV_KEYS = """mode distribute val_while_train val_interval log_interval seed device_target dataset data_dir
train_split val_split dataset_download num_parallel_workers shuffle num_samples batch_size drop_remainder
image_resize scale ratio hflip vflip color_jitter interpolation auto_augment aug_splits re_prob re_scale re_ratio
re_value re_max_attempts mean std crop_pct mixup cutmix cutmix_prob aug_repeats model num_classes in_channels
drop_rate drop_path_rate pretrained ckpt_path resume_opt keep_checkpoint_max ckpt_save_dir ckpt_save_interval
ckpt_save_policy epoch_size dataset_sink_mode ema ema_decay clip_grad clip_value layer_decay
gradient_accumulation_steps opt momentum weight_decay use_nesterov weight_decay_filter eps scheduler lr min_lr
warmup_epochs warmup_factor decay_epochs decay_rate multi_step_decay_milestones lr_epoch_stair num_cycles
cycle_decay loss label_smoothing aux_factor reduction amp_level val_amp_level amp_cast_list loss_scale_type
loss_scale drop_overflow_update eval_shuffle""".split()


def write_yaml(path, data):
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_all_mindcv_keys_are_accepted():
    missing = [k for k in MINDCV_KEYS if k not in option_table()]
    assert missing == []


def test_precedence_defaults_yaml_cli(tmp_path):
    cfg_file = write_yaml(tmp_path / "c.yaml", {"lr": 0.5, "batch_size": 16, "model": "resnet18"})
    cfg = parse_config(["--config", cfg_file, "--lr=0.25"], "t")
    assert cfg.lr == 0.25            # CLI beats YAML
    assert cfg.batch_size == 16      # YAML beats default
    assert cfg.epoch_size == 90      # default
    cfg = parse_config(["--config", cfg_file, "--batch_size", "4"], "t")
    assert (cfg.batch_size, cfg.lr) == (4, 0.5)


@pytest.mark.parametrize("text,expected", [("True", True), ("False", False), ("true", True), ("false", False),
                                           ("1", True), ("0", False)])
def test_booleans(text, expected):
    assert parse_config(["--shuffle", text], "t").shuffle is expected
    assert parse_config([f"--shuffle={text}"], "t").shuffle is expected


def test_bare_boolean_flag_means_true():
    assert parse_config(["--pretrained"], "t").pretrained is True


def test_lists_from_cli_and_yaml(tmp_path):
    cfg = parse_config(["--mean", "127.5", "127.5", "127.5", "--scale", "0.5", "1.0"], "t")
    assert cfg.mean == [127.5, 127.5, 127.5] and cfg.scale == [0.5, 1.0]
    cfg = parse_config(["--config", write_yaml(tmp_path / "c.yaml", {"std": [1, 2, 3]})], "t")
    assert cfg.std == [1.0, 2.0, 3.0]


def test_none_values():
    assert parse_config(["--auto_augment", "None"], "t").auto_augment is None
    assert parse_config(["--auto_augment", "randaug-m7-mstd0.5"], "t").auto_augment == "randaug-m7-mstd0.5"


@pytest.mark.parametrize("argv,needle", [
    (["--lrr", "0.1"], "'--lrr' (did you mean 'lr'?)"),
    (["--batch_sise=4"], "did you mean 'batch_size'"),
    (["--lr", "fast"], "'lr'"),
    (["--batch_size", "0"], "'batch_size' must be > 0"),
    (["--lr", "-0.1"], "'lr' must be >= 0"),
    (["--opt", "adamax"], "'opt'"),
    (["--shuffle", "maybe"], "'shuffle'"),
])
def test_cli_errors_name_the_key(argv, needle):
    with pytest.raises(UsageError) as err:
        parse_config(argv, "t")
    assert needle in str(err.value)


def test_unknown_yaml_key_names_closest(tmp_path):
    cfg_file = write_yaml(tmp_path / "c.yaml", {"epochs_size": 3})
    with pytest.raises(UsageError) as err:
        parse_config(["--config", cfg_file], "t")
    assert "unknown key 'epochs_size'" in str(err.value) and "epoch_size" in str(err.value)
    assert cfg_file in str(err.value)


def test_yaml_wrong_type(tmp_path):
    with pytest.raises(UsageError, match="'batch_size'"):
        parse_config(["--config", write_yaml(tmp_path / "c.yaml", {"batch_size": "many"})], "t")


def test_missing_config_file():
    with pytest.raises(UsageError, match="config file not found"):
        parse_config(["--config", "/nonexistent.yaml"], "t")


def test_saved_config_round_trips(tmp_path):
    cfg = parse_config(["--lr", "0.03", "--mean", "1", "2", "3", "--auto_augment", "randaug-m7-mstd0.5"], "t")
    save_config(cfg, str(tmp_path / "config.yaml"))
    again = parse_config(["--config", str(tmp_path / "config.yaml")], "t")
    assert vars(again) | {"config": ""} == vars(cfg) | {"config": ""}


def test_help_lists_keys_with_defaults():
    proc = run_main("finetune.py", "--help")
    assert proc.returncode == 0
    for text in ("--lr", "(default: 0.001)", "--dataset_format", "--weight_decay_filter"):
        assert text in proc.stdout


def test_cli_unknown_key_is_one_line_exit_2():
    proc = run_script("finetune.py", "--lrr", "0.1")
    assert_one_line_error(proc, "--lrr", "lr", code=2)


def test_mindcv_config_file_is_accepted(tmp_path):
    """A config written like MindCV's configs/mobilenetv3/mobilenet_v3_small_ascend.yaml parses unchanged."""
    mindcv_cfg = {"mode": 0, "distribute": True, "num_parallel_workers": 8, "val_while_train": True,
                  "dataset": "imagenet", "data_dir": "/path/to/imagenet", "shuffle": True, "dataset_download": False,
                  "batch_size": 75, "drop_remainder": True, "train_split": "train", "image_resize": 224,
                  "scale": [0.08, 1.0], "ratio": [0.75, 1.333], "hflip": 0.5, "color_jitter": 0.4,
                  "interpolation": "bilinear", "crop_pct": 0.875, "model": "mobilenet_v3_small_100",
                  "num_classes": 1000, "pretrained": False, "ckpt_path": "", "keep_checkpoint_max": 30,
                  "ckpt_save_dir": "./ckpt", "epoch_size": 470, "dataset_sink_mode": True, "amp_level": "O3",
                  "loss": "CE", "label_smoothing": 0.1, "scheduler": "cosine_decay", "min_lr": 0.0, "lr": 0.77,
                  "warmup_epochs": 4, "decay_epochs": 466, "opt": "momentum", "weight_decay_filter": "auto",
                  "momentum": 0.9, "weight_decay": 0.00002, "loss_scale": 1024, "use_nesterov": False}
    cfg = parse_config(["--config", write_yaml(tmp_path / "m.yaml", mindcv_cfg), "--num_classes=100"], "t")
    assert cfg.num_classes == 100 and cfg.loss_scale == 1024.0 and cfg.amp_level == "O3"


SHIPPED = ["configs/demo.yaml", "configs/mobilenetv3/mobilenet_v3_small_aircraft.yaml",
           "configs/mobilenetv3/mobilenet_v3_large_aircraft.yaml", "configs/convnext/convnext_tiny_aircraft.yaml",
           "configs/resnest/resnest50_aircraft.yaml", "configs/mobilenetv2/mobilenet_v2_aircraft_keras.yaml",
           "configs/mobilenetv2/fmnist_compare.yaml"]


@pytest.mark.parametrize("path", SHIPPED)
def test_shipped_configs_parse_and_decay(path):
    from tools.train.schedule import build_lr_schedule

    from mindcv.models.registry import list_models

    cfg = parse_config(["--config", f"{ROOT}/{path}"], "t")
    assert cfg.model in list_models()
    lrs = build_lr_schedule(cfg, steps_per_epoch=10)
    assert len(lrs) == 10 * cfg.epoch_size
    assert max(lrs) == pytest.approx(cfg.lr, rel=0.05)
    assert lrs[-1] <= cfg.min_lr + 0.01 * cfg.lr        # ends decayed, not near the peak


def test_aircraft_config_has_the_documents_hyperparameters():
    cfg = parse_config(["--config", f"{ROOT}/configs/mobilenetv3/mobilenet_v3_small_aircraft.yaml"], "t")
    assert (cfg.dataset, cfg.batch_size, cfg.image_resize, cfg.auto_augment, cfg.num_classes, cfg.pretrained,
            cfg.epoch_size, cfg.lr, cfg.train_split, cfg.val_split) == (
        "", 8, 600, "randaug-m7-mstd0.5", 100, True, 50, 0.002, "trainval", "test")


def test_shortening_epochs_alone_still_decays():
    """MindCV's own config (decay_epochs 466) with epoch_size 50: the schedule must still end low."""
    from tools.train.schedule import build_lr_schedule

    cfg = parse_config(["--lr", "0.77", "--min_lr", "0", "--warmup_epochs", "4", "--decay_epochs", "466",
                        "--epoch_size", "50"], "t")
    lrs = build_lr_schedule(cfg, steps_per_epoch=5)
    assert lrs[-1] < 0.01 * 0.77


def test_base_file_sits_between_defaults_and_the_yaml(tmp_path):
    """defaults < ``_base_`` file < YAML < command line; ``_base_`` is relative to the YAML that names it."""
    (tmp_path / "sub").mkdir()
    write_yaml(tmp_path / "sub" / "base.yaml", {"lr": 0.5, "batch_size": 16, "model": "resnet18"})
    cfg_file = write_yaml(tmp_path / "c.yaml", {"_base_": "sub/base.yaml", "batch_size": 8})
    cfg = parse_config(["--config", cfg_file, "--model", "resnet34"], "t")
    assert (cfg.lr, cfg.batch_size, cfg.model, cfg.epoch_size) == (0.5, 8, "resnet34", 90)


@pytest.mark.parametrize("argv, needle", [
    (["--mean", "1", "2"], "'mean' must be 3 values, one per channel (images are read as RGB), got [1.0, 2.0]"),
    (["--std", "1", "0", "1"], "'std' must be 3 values > 0"),
])
def test_normalisation_values_per_channel(argv, needle):
    with pytest.raises(UsageError) as err:
        parse_config(argv, "t")
    assert needle in str(err.value)


def test_yaml_merge_key_is_read_as_yaml_defines_it(tmp_path):
    """``<<`` merges mappings: the file's own keys win, and an earlier merged mapping wins over a later one
    (the YAML spec; PyYAML 6's own loader lets the later one win). An anchored value of a key merges too."""
    path = tmp_path / "c.yaml"
    path.write_text("lr: 0.5\n<<: [{batch_size: 4, lr: 0.1}, {batch_size: 9, epoch_size: 3}]\n")
    cfg = parse_config(["--config", str(path)], "t")
    assert (cfg.lr, cfg.batch_size, cfg.epoch_size) == (0.5, 4, 3)
    path.write_text("mean: &rgb [0.5, 0.5, 0.5]\n<<: {std: *rgb}\n")
    assert parse_config(["--config", str(path)], "t").std == [0.5, 0.5, 0.5]
    path.write_text("<<: {epochs_size: 3}\n")  # merged keys are checked like the file's own
    with pytest.raises(UsageError, match=r"c.yaml:1: unknown key 'epochs_size'"):
        parse_config(["--config", str(path)], "t")
    path.write_text("lr: 0.1\n<<: 3\n")
    with pytest.raises(UsageError, match=r"c.yaml:2: '<<' merges a mapping or a list of mappings"):
        parse_config(["--config", str(path)], "t")
    path.write_text("<<: {lr: 0.1}\n<<: {lr: 0.2}\n")  # a key, once per mapping: a list merges several
    with pytest.raises(UsageError, match=r"c.yaml:2: key '<<' is given twice \(first on line 1\)"):
        parse_config(["--config", str(path)], "t")


@pytest.mark.parametrize("text,where", [
    ("lr: 0.1\nscale: [0.08, 1.0\nepoch_size: 3\n",
     "c.yaml:3: not valid YAML (column 11): while parsing a flow sequence; expected ',' or ']'"),
    ("lr: 0.1\n  bad: 2\n", "c.yaml:2: not valid YAML (column 6): mapping values are not allowed here")])
def test_invalid_yaml_is_one_line_naming_its_line(tmp_path, text, where):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(UsageError) as err:
        parse_config(["--config", str(path)], "t")
    assert where in str(err.value) and "\n" not in str(err.value)


def test_a_change_after_parsing_that_breaks_a_rule_is_refused_naming_its_source():
    cfg = parse_config(["--batch_size", "8"], "test")
    with pytest.raises(UsageError, match=r"'batch_size' must be > 0, got 0 \(set by --val_fraction\)"):
        update(cfg, "--val_fraction", batch_size=0, lr=0.5)
    assert (cfg.batch_size, cfg.lr) == (8, option_table()["lr"][0])  # nothing of a refused change is applied


def test_a_change_that_breaks_a_cross_key_rule_names_its_source_and_values():
    cfg = parse_config(["--freeze_backbone", "True"], "test")
    with pytest.raises(UsageError, match=r"nothing would unfreeze.*\(set by lr_find.py: freeze_epochs=2\)"):
        update(cfg, "lr_find.py", freeze_epochs=2)
    assert cfg.freeze_epochs == 0


def test_a_valid_change_after_parsing_is_applied():
    cfg = parse_config(["--val_fraction", "0.2"], "test")
    assert update(cfg, "--val_fraction", dataset_format="list", list_dir="/tmp/split", val_fraction=0.0) is cfg
    assert (cfg.dataset_format, cfg.list_dir, cfg.val_fraction) == ("list", "/tmp/split", 0.0)


def test_a_change_to_a_key_the_config_does_not_have_is_a_programming_error():
    cfg = parse_config([], "test")
    with pytest.raises(AttributeError, match="bach_size"):
        update(cfg, "a typo", bach_size=4)


def test_an_infinite_lr_and_an_empty_config_file_are_refused(tmp_path):
    with pytest.raises(UsageError, match=r"'lr' must be >= 0 and finite, got inf"):
        parse_config(["--lr", "inf"], "t")
    empty = tmp_path / "c.yaml"
    empty.write_bytes(b"")
    with pytest.raises(UsageError, match=r"c.yaml is an empty file \(0 bytes\); name a YAML file"):
        parse_config(["--config", str(empty)], "t")
