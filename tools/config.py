"""Configuration: defaults < YAML file (``--config``) < command-line flags.

Every key of MindCV 0.3.0's ``config.py`` is accepted with its meaning, so MindCV's own config
files run unchanged; the keys this project adds are marked "(suite)" in ``--help``.
"""
import argparse
import difflib
import os

import yaml

from tools.errors import CliParser, UsageError
from tools.fileio import atomic_write_text, first_line

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_NONE = {"none", "null", "~", ""}


# ---- value converters: each accepts a YAML value or a CLI string --------------------------------

def to_bool(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("expected a boolean (True/False/true/false/1/0)")


def _optional(convert):
    def optional(value):
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
            return None
        return convert(value)

    return optional


def _number(kind):
    def number(value):
        if isinstance(value, bool):
            raise ValueError(f"expected {kind.__name__}, got a boolean")
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError("expected an integer")
        if kind is int and isinstance(value, str):
            return int(value)
        return kind(float(value)) if kind is int else kind(value)

    return number


def _sequence(item, length=None):
    def sequence(value):
        if isinstance(value, str):
            value = value.replace(",", " ").split()
        if not isinstance(value, (list, tuple)):
            value = [value]
        items = [item(v) for v in value]
        if length is not None and len(items) != length:
            raise ValueError(f"expected {length} values")
        return items

    return sequence


def to_multipliers(value):
    """``{prefix: factor}`` from a mapping or from CLI items ``prefix=factor``."""
    if value is None:
        return {}
    if isinstance(value, str):
        value = value.split()
    if isinstance(value, (list, tuple)):
        pairs = {}
        for item in value:
            name, sep, factor = str(item).partition("=")
            if not sep or not name:
                raise ValueError(f"expected NAME=FACTOR, got {item!r}")
            pairs[name] = factor
        value = pairs
    if not isinstance(value, dict):
        raise ValueError("expected a mapping NAME: FACTOR")
    return {str(k): float(v) for k, v in value.items()}


def _choice(*choices, optional=False):
    def choice(value):
        if optional and (value is None or str(value).strip().lower() in _NONE):
            return None
        text = str(value)
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return text

    return choice


def int_or_str(value):
    """A number where one is given (``0``), else the text (``random``)."""
    text = str(value).strip()
    return int(text) if text.lstrip("-").isdigit() else text


STR, INT, FLOAT, BOOL = str, _number(int), _number(float), to_bool
OPT_STR, OPT_INT, OPT_FLOAT = _optional(str), _optional(INT), _optional(FLOAT)
FLOATS, INTS, STRS = _sequence(FLOAT), _sequence(INT), _sequence(str)
PAIR = _sequence(FLOAT, length=2)
LIST_TYPES = (FLOATS, INTS, STRS, PAIR, to_multipliers)

# (key, default, converter, help); "(suite)" marks keys this project adds to MindCV's.
OPTIONS = {
    "System": [
        ("mode", 0, _number(int), "0 = GRAPH_MODE, 1 = PYNATIVE_MODE"),
        ("distribute", False, BOOL, "data-parallel training under msrun"),
        ("val_while_train", True, BOOL, "validate during training (suite default True; MindCV's False)"),
        ("val_interval", 1, INT, "validate every N epochs"),
        ("log_interval", 100, INT, "print a training line every N steps"),
        ("seed", 42, INT, "seed for numpy, random and mindspore"),
        ("device_target", "CPU", STR, "CPU, GPU or Ascend; an unavailable target falls back to CPU"),
    ],
    "Dataset": [
        ("dataset", "", STR, "'' (or 'imagenet') = a custom folder/annotation dataset"),
        ("data_dir", "./", STR, "dataset root: split folders or Aircraft-style annotation files"),
        ("dataset_format", "auto", _choice("auto", "folder", "annotation"),
         "(suite) auto, folder (<data_dir>/<split>/<class>/) or annotation (images_<level>_<split>.txt)"),
        ("label_level", "variant", _choice("variant", "family", "manufacturer"),
         "(suite) annotation label level: variant, family or manufacturer"),
        ("train_split", "train", STR, "train split name"),
        ("val_split", "val", STR, "validation split name"),
        ("dataset_download", False, BOOL, "download MNIST/CIFAR (not available offline)"),
        ("num_parallel_workers", 2, INT, "data pipeline workers"),
        ("shuffle", True, BOOL, "shuffle the training data"),
        ("num_samples", None, OPT_INT, "use only this many training samples"),
        ("skip_bad_images", True, BOOL, "(suite) skip unreadable images with a warning naming each (False: error)"),
        ("max_bad_images", 100, INT, "(suite) more unreadable images than this in a split is an error"),
        ("batch_size", 128, INT, "batch size per device"),
        ("drop_remainder", True, BOOL, "drop the last incomplete training batch"),
        ("aug_repeats", 0, INT, "repeated augmentation factor (0/1 = off)"),
    ],
    "Augmentation": [
        ("image_resize", 224, INT, "input size in pixels"),
        ("scale", [0.08, 1.0], PAIR, "random-resized-crop area range"),
        ("ratio", [0.75, 1.333], PAIR, "random-resized-crop aspect range"),
        ("hflip", 0.5, FLOAT, "horizontal flip probability"),
        ("vflip", 0.0, FLOAT, "vertical flip probability"),
        ("color_jitter", 0.4, OPT_FLOAT, "colour jitter strength"),
        ("interpolation", "bilinear", STR, "resize interpolation"),
        ("auto_augment", None, OPT_STR, "e.g. randaug-m7-mstd0.5, autoaug-mstd0.5, trivialaugwide"),
        ("aug_splits", 0, INT, "augmentation splits (0 or 3)"),
        ("re_prob", 0.0, FLOAT, "random erasing probability"),
        ("re_scale", [0.02, 0.33], PAIR, "random erasing area range"),
        ("re_ratio", [0.3, 3.3], PAIR, "random erasing aspect range"),
        ("re_value", 0, int_or_str, "random erasing fill value"),
        ("re_max_attempts", 10, INT, "random erasing attempts"),
        ("mean", [0.485 * 255, 0.456 * 255, 0.406 * 255], FLOATS, "per-channel mean (0-255 scale)"),
        ("std", [0.229 * 255, 0.224 * 255, 0.225 * 255], FLOATS, "per-channel std (0-255 scale)"),
        ("crop_pct", 0.875, FLOAT, "eval centre-crop fraction"),
        ("mixup", 0.0, FLOAT, "mixup alpha"),
        ("cutmix", 0.0, FLOAT, "cutmix alpha"),
        ("cutmix_prob", 1.0, FLOAT, "probability of mixup/cutmix"),
    ],
    "Model": [
        ("model", "mobilenet_v2_035_224", STR, "MindCV model name"),
        ("num_classes", None, OPT_INT, "number of classes (default: found in the data)"),
        ("in_channels", 3, INT, "input channels"),
        ("tf_same_padding", False, BOOL, "(suite) TensorFlow 'same' padding in strided convs (Keras-converted weights)"),
        ("drop_rate", None, OPT_FLOAT, "dropout rate"),
        ("drop_path_rate", None, OPT_FLOAT, "drop-path rate"),
        ("pretrained", False, BOOL, "load MindCV's pretrained weights (needs internet)"),
        ("ckpt_path", "", STR, "initialise from this local checkpoint"),
        ("resume_opt", False, BOOL, "MindCV key; accepted, resuming is done with 'resume'"),
        ("keep_checkpoint_max", 10, INT, "keep at most N epoch checkpoints"),
        ("ckpt_save_dir", "./ckpt", STR, "output folder: checkpoints, results, resolved config"),
        ("ckpt_save_interval", 1, INT, "save an epoch checkpoint every N epochs"),
        ("ckpt_save_policy", "latest_k", _choice("latest_k", "top_k", optional=True), "latest_k or top_k"),
        ("epoch_size", 90, INT, "number of epochs"),
        ("dataset_sink_mode", True, BOOL, "MindCV key; accepted (the suite feeds batches step by step)"),
        ("ema", False, BOOL, "exponential moving average of weights"),
        ("ema_decay", 0.9999, FLOAT, "EMA decay"),
        ("clip_grad", False, BOOL, "clip gradients by global norm"),
        ("clip_value", 15.0, FLOAT, "gradient clipping norm"),
        ("layer_decay", None, OPT_FLOAT, "layer-wise lr decay: block i of n gets lr * d**(n-i), head 1"),
        ("gradient_accumulation_steps", 1, INT, "accumulate gradients over N batches"),
    ],
    "Fine-tuning (suite)": [
        ("freeze_backbone", False, BOOL, "(suite) freeze every feature block; train only the head"),
        ("freeze_layers", 0, INT, "(suite) freeze the first N feature blocks (features.0 .. features.N-1)"),
        ("freeze_patterns", [], STRS, "(suite) also freeze parameters matching these regexes"),
        ("freeze_bn_stats", True, BOOL, "(suite) frozen BatchNorm layers keep their running statistics"),
        ("cache_features", False, BOOL,
         "(suite) linear probe: run the frozen backbone once over the training images (evaluation transforms, "
         "no augmentation) and train only the head on the cached features; needs freeze_backbone and "
         "freeze_bn_stats, no mixup/cutmix"),
        ("lr_mult", {}, to_multipliers, "(suite) lr multipliers by name prefix, e.g. classifier=1.2 features.13=1.05"),
        ("wd_mult", {}, to_multipliers, "(suite) weight-decay multipliers by name prefix"),
        ("resume", "", STR, "(suite) continue a run: 'auto' (its ckpt_save_dir) or a resume.ckpt path"),
        ("recovery_interval", 0, INT, "(suite) also write the resume state every N training steps (0 = off)"),
        ("overwrite", False, BOOL, "(suite) reuse a ckpt_save_dir holding a previous run (else a new <dir>_N)"),
        ("early_stop_patience", 0, INT, "(suite) stop after N validations without a better top1 (0 = off)"),
    ],
    "Optimizer": [
        ("opt", "adam", _choice("sgd", "momentum", "adam", "adamw", "lion", "rmsprop", "adagrad", "lamb", "nadam"),
         "optimizer"),
        ("momentum", 0.9, FLOAT, "momentum"),
        ("weight_decay", 1e-6, FLOAT, "weight decay"),
        ("use_nesterov", False, BOOL, "Nesterov momentum"),
        ("weight_decay_filter", "disable", _choice("disable", "auto", "norm_and_bias"),
         "disable, auto or norm_and_bias"),
        ("filter_bias_and_bn", True, BOOL, "older MindCV key; accepted"),
        ("eps", 1e-10, FLOAT, "optimizer epsilon"),
    ],
    "Scheduler": [
        ("scheduler", "cosine_decay", _choice("constant", "cosine_decay", "exponential_decay", "step_decay",
                                              "multi_step_decay", "one_cycle", "cyclic"), "lr schedule"),
        ("lr", 0.001, FLOAT, "peak learning rate"),
        ("min_lr", 1e-6, FLOAT, "final learning rate of cosine decay"),
        ("warmup_epochs", 3, INT, "linear warmup epochs"),
        ("warmup_factor", 0.0, FLOAT, "warmup start factor"),
        ("decay_epochs", None, OPT_INT,
         "decay epochs (suite default: epoch_size - warmup_epochs; capped to that)"),
        ("decay_rate", 0.9, FLOAT, "decay rate of step/exponential schedules"),
        ("multi_step_decay_milestones", [30, 60, 90], INTS, "milestone epochs of multi_step_decay"),
        ("lr_epoch_stair", False, BOOL, "change lr once per epoch"),
        ("num_cycles", 1, INT, "cosine cycles"),
        ("cycle_decay", 1.0, FLOAT, "peak decay per cosine cycle"),
    ],
    "Loss": [
        ("loss", "CE", _choice("CE", "BCE"), "CE or BCE"),
        ("label_smoothing", 0.0, FLOAT, "label smoothing"),
        ("aux_factor", 0.0, FLOAT, "auxiliary loss factor"),
        ("reduction", "mean", STR, "loss reduction"),
    ],
    "Mixed precision": [
        ("amp_level", "O0", _choice("O0", "O1", "O2", "O3"), "training AMP level (O0 on CPU)"),
        ("val_amp_level", "O0", _choice("O0", "O1", "O2", "O3"), "validation AMP level"),
        ("amp_cast_list", None, OPT_STR, "cells to cast"),
        ("loss_scale_type", "fixed", _choice("fixed", "dynamic", "auto"), "loss scale type"),
        ("loss_scale", 1.0, FLOAT, "loss scale"),
        ("dynamic_loss_scale", False, BOOL, "older MindCV key; accepted"),
        ("drop_overflow_update", False, BOOL, "skip updates on overflow"),
        ("eval_shuffle", False, BOOL, "shuffle evaluation data"),
    ],
    "ModelArts (accepted, unused)": [
        ("enable_modelarts", False, BOOL, "unused here"),
        ("multi_data_url", "/cache/data/", STR, "unused here"),
        ("data_url", "/cache/data/", STR, "unused here"),
        ("ckpt_url", "/cache/output/", STR, "unused here"),
        ("train_url", "/cache/output/", STR, "unused here"),
    ],
}

CONFIG_FILE_NAME = "config.yaml"


def option_table(extra=None):
    """``{key: (default, converter, help, group)}`` of all options plus a script's ``extra`` group."""
    groups = dict(OPTIONS)
    if extra:
        groups.update(extra)
    return {key: (default, conv, text, group) for group, opts in groups.items()
            for key, default, conv, text in opts}


def _closest(key, table):
    match = difflib.get_close_matches(key, list(table), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _convert(key, value, table, where):
    converter = table[key][1]
    try:
        return converter(value)
    except (TypeError, ValueError) as err:
        raise UsageError(f"{where}: bad value {value!r} for '{key}': {err}") from None


BASE_KEY = "_base_"


def load_yaml(path, table, _seen=()):
    """Read a YAML config file into converted ``{key: value}``; unknown keys are errors.

    ``_base_: other.yaml`` (relative to the file) loads that file first and overrides it.
    """
    if not os.path.isfile(path):
        raise UsageError(f"config file not found: {path}")
    if os.path.realpath(path) in _seen:
        raise UsageError(f"{path}: _base_ files include each other")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as err:
        raise UsageError(f"{path}: not valid YAML: {first_line(err)}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping of keys to values")
    values = {}
    base = data.pop(BASE_KEY, None)
    if base:
        base_path = os.path.join(os.path.dirname(os.path.abspath(path)), str(base))
        values.update(load_yaml(base_path, table, _seen + (os.path.realpath(path),)))
    for key, value in data.items():
        if key not in table:
            raise UsageError(f"{path}: unknown key '{key}'{_closest(str(key), table)}")
        values[key] = _convert(key, value, table, path)
    return values


def build_parser(description, table):
    """An argparse parser with ``--config`` and one flag per key, for ``--help`` and the CLI."""
    parser = CliParser(description=description, allow_abbrev=False,
                     usage="%(prog)s [-h] [--config FILE] [--KEY VALUE ...]")
    parser.add_argument("-c", "--config", default="", help="YAML config file")
    groups = {}
    for key, (default, converter, text, group) in table.items():
        if group not in groups:
            groups[group] = parser.add_argument_group(group)
        nargs = "+" if converter in LIST_TYPES else ("?" if converter is BOOL else None)
        groups[group].add_argument(f"--{key}", default=argparse.SUPPRESS, nargs=nargs,
                                   const="true" if converter is BOOL else None,
                                   help=f"{text} (default: {default})", metavar=key.upper())
    return parser


def parse_config(argv, description, extra=None):
    """Resolve the configuration of a script: defaults < YAML < CLI. Returns a Namespace."""
    table = option_table(extra)
    parser = build_parser(description, table)
    cli, unknown = parser.parse_known_args(argv)
    for item in unknown:
        if item.startswith("-"):
            key = item.lstrip("-").split("=", 1)[0]
            raise UsageError(f"unknown option '--{key}'{_closest(key, table)}")
        raise UsageError(f"unexpected argument '{item}'")
    values = {key: spec[0] for key, spec in table.items()}
    if cli.config:
        values.update(load_yaml(cli.config, table))
    for key, value in vars(cli).items():
        if key != "config":
            values[key] = _convert(key, value, table, "command line")
    values["config"] = cli.config
    cfg = argparse.Namespace(**values)
    check_values(cfg)
    return cfg


# key -> (test, requirement) for values that can never work
_RULES = {
    "lr": (lambda v: v >= 0, ">= 0"),
    "min_lr": (lambda v: v >= 0, ">= 0"),
    "weight_decay": (lambda v: v >= 0, ">= 0"),
    "batch_size": (lambda v: v > 0, "> 0"),
    "epoch_size": (lambda v: v > 0, "> 0"),
    "warmup_epochs": (lambda v: v >= 0, ">= 0"),
    "val_interval": (lambda v: v > 0, "> 0"),
    "log_interval": (lambda v: v > 0, "> 0"),
    "ckpt_save_interval": (lambda v: v > 0, "> 0"),
    "keep_checkpoint_max": (lambda v: v > 0, "> 0"),
    "recovery_interval": (lambda v: v >= 0, ">= 0"),
    "num_parallel_workers": (lambda v: v > 0, "> 0"),
    "image_resize": (lambda v: v > 0, "> 0"),
    "num_classes": (lambda v: v is None or v > 0, "> 0"),
    "num_samples": (lambda v: v is None or v > 0, "> 0"),
    "max_bad_images": (lambda v: v >= 0, ">= 0"),
    "freeze_layers": (lambda v: v >= 0, ">= 0"),
    "early_stop_patience": (lambda v: v >= 0, ">= 0"),
    "gradient_accumulation_steps": (lambda v: v > 0, "> 0"),
    "label_smoothing": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "crop_pct": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "mode": (lambda v: v in (0, 1), "0 (GRAPH) or 1 (PYNATIVE)"),
}


def check_values(cfg):
    """Refuse values (and combinations) that can never work, naming the key."""
    for key, (test, requirement) in _RULES.items():
        value = getattr(cfg, key, None)
        if key in vars(cfg) and not test(value):
            raise UsageError(f"'{key}' must be {requirement}, got {value!r}")
    if getattr(cfg, "cache_features", False):
        _check_cache_features(cfg)


def _check_cache_features(cfg):
    """Cached features are what training would compute only with the whole backbone (and its
    BatchNorm statistics) frozen and no mixing of images."""
    for key in ("freeze_backbone", "freeze_bn_stats"):
        if not getattr(cfg, key):
            raise UsageError(f"'cache_features' needs '{key}: True'")
    for key in ("mixup", "cutmix"):
        if getattr(cfg, key) > 0:
            raise UsageError(f"'cache_features' cannot be used with '{key}' > 0 (images are not mixed in "
                             "cached features)")


def save_config(cfg, path):
    """Write the resolved configuration as YAML (readable back with ``--config``)."""
    data = {k: v for k, v in vars(cfg).items() if k != "config"}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
