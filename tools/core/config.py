"""Configuration: defaults < YAML file (``--config``) < command-line flags.

Every key of MindCV 0.3.0's ``config.py`` is accepted with its meaning, so MindCV's own config
files run unchanged; the keys this project adds are marked "(suite)" in ``--help``.
"""
import argparse
import difflib
import math
import os
import re

from tools.core.errors import CliParser, UsageError
from tools.core.fileio import atomic_write_text, first_line, input_file_problem
from tools.datasets import layouts

import yaml
from mindspore.dataset.vision import Inter

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


def choice(*choices, optional=False, case=None):
    """Converter of a value that must be one of ``choices`` (the one checker of the scripts' keys too);
    ``optional``: none/null/~/empty give None; ``case`` (``str.lower``/``str.upper``): compared in any case
    and stored in that case."""
    def convert(value):
        if optional and (value is None or str(value).strip().lower() in _NONE):
            return None
        text = case(str(value).strip()) if case else str(value)
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}{' (any case)' if case else ''}")
        return text

    return convert


def _name(*names):
    """A name compared case-insensitively, as MindCV's factories do (``name.lower()``); stored lowercase."""
    return choice(*names, case=str.lower)


def to_color_jitter(value):
    """MindCV's ``color_jitter``: None, one strength for brightness/contrast/saturation, or a list of
    3 (brightness, contrast, saturation) or 4 (+ hue) values."""
    if isinstance(value, str):
        value = value.replace(",", " ").split() or [""]
    if isinstance(value, (list, tuple)):
        if len(value) == 1:
            return _optional(FLOAT)(value[0])
        if len(value) not in (3, 4):
            raise ValueError(f"expected one number or a list of 3 or 4, got {len(value)} values")
        return [FLOAT(v) for v in value]
    return _optional(FLOAT)(value)


def to_class_weights(value):
    """``class_weights``: None (``none``), ``balanced``, or one weight >= 0 per class."""
    if isinstance(value, (list, tuple)) and len(value) == 1 and isinstance(value[0], str):
        value = value[0]  # one word from the command line
    if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
        return None
    if isinstance(value, str) and value.strip().lower() == "balanced":
        return "balanced"
    weights = FLOATS(value)
    if not weights or any(not w >= 0 for w in weights) or not any(weights):
        raise ValueError("expected none, balanced or a list of weights >= 0 (not all 0), one per class")
    return weights


DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}


def to_duration(value):
    """``max_time``: None (none/empty: no budget), or seconds > 0 from a number or ``90s``, ``30m``, ``2h``,
    ``1.5h``."""
    if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
        return None
    text = "" if isinstance(value, bool) else str(value).strip().lower()
    match = re.fullmatch(r"(\d+\.?\d*|\.\d+)\s*([smh]?)", text)
    seconds = float(match.group(1)) * DURATION_UNITS[match.group(2)] if match else 0.0
    if not 0 < seconds < math.inf:
        raise ValueError("expected a duration > 0 such as 90s, 30m, 2h or a number of seconds (none = no budget)")
    return seconds


def to_resize_schedule(value):
    """``image_resize_schedule``: [] (none), or pairs ``[E, S]`` -- from E epochs done on, train at S px -- as a YAML
    list of pairs or CLI items ``E S E S ...`` / ``E:S ...``; E from 0, increasing; S > 0."""
    if isinstance(value, str) or (isinstance(value, (list, tuple)) and not any(isinstance(v, (list, tuple))
                                                                               for v in value)):
        items = " ".join(map(str, value if isinstance(value, (list, tuple)) else [value]))
        items = items.replace(",", " ").replace(":", " ").split()
        if len(items) <= 1 and (not items or items[0].lower() in _NONE):
            return []
        if len(items) % 2:
            raise ValueError("expected pairs of (epochs done, size), e.g. 0 64 3 96 or 0:64 3:96")
        value = [items[i:i + 2] for i in range(0, len(items), 2)]
    if value is None:
        return []
    if any(not isinstance(pair, (list, tuple)) or len(pair) != 2 for pair in value):
        raise ValueError("expected a list of [epochs done, size] pairs, e.g. [[0, 64], [3, 96]]")
    try:
        pairs = [[INT(done), INT(size)] for done, size in value]
    except (TypeError, ValueError):
        raise ValueError("epochs done and sizes are whole numbers, e.g. [[0, 64], [3, 96]]") from None
    if not pairs:
        return []
    if pairs[0][0] != 0 or any(b[0] <= a[0] for a, b in zip(pairs, pairs[1:])) or min(s for _, s in pairs) <= 0:
        raise ValueError("the first pair must start at 0 epochs done, the epochs increase, and sizes are > 0")
    return pairs


def int_or_str(value):
    """A number where one is given (``0``), else the text (``random``)."""
    text = str(value).strip()
    return int(text) if text.lstrip("-").isdigit() else text


STR, INT, FLOAT, BOOL = str, _number(int), _number(float), to_bool
OPT_STR, OPT_INT, OPT_FLOAT = _optional(str), _optional(INT), _optional(FLOAT)
FLOATS, INTS, STRS = _sequence(FLOAT), _sequence(INT), _sequence(str)
PAIR = _sequence(FLOAT, length=2)
LIST_TYPES = (FLOATS, INTS, STRS, PAIR, to_multipliers, to_color_jitter, to_class_weights, to_resize_schedule)

# The names MindCV 0.3.0's factories accept (create_optimizer, create_loss, create_scheduler compare
# against these after lowercasing); tests/cli/test_mindcv_configs.py reads them back out of the factories'
# source, so this list cannot drift from an upgraded MindCV unnoticed.
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "lion", "nadam", "adan", "rmsprop", "adagrad", "lamb")
LOSSES = ("ce", "bce", "asl_single_label", "asl_multi_label", "jsd")
SCHEDULERS = ("constant", "cosine_decay", "warmup_cosine_decay", "exponential_decay", "polynomial_decay",
              "step_decay", "multi_step_decay", "one_cycle", "cyclic")
# task -> the values of best_metric it accepts (tools/train/tasks.py reads them from here)
BEST_METRICS = {"single": ("top1", "mean_per_class_acc", "val_loss"), "multilabel": ("map", "f1", "val_loss")}
INTERPOLATIONS = tuple(name.lower() for name in Inter.__members__)  # MindCV silently maps others to bilinear

# (key, default, converter, help); "(suite)" marks keys this project adds to MindCV's.
OPTIONS = {
    "System": [
        ("mode", 0, _number(int), "0 = GRAPH_MODE, 1 = PYNATIVE_MODE"),
        ("distribute", False, BOOL, "data-parallel training under msrun"),
        ("val_while_train", True, BOOL, "validate during training (suite default True; MindCV's False)"),
        ("val_interval", 1, INT, "validate every N epochs and always the last (the best checkpoint is chosen "
                                 "among validated epochs; early_stop_patience counts validations)"),
        ("log_interval", 100, INT, "print a training line every N steps"),
        ("seed", 42, INT, "seed for numpy, random and mindspore"),
        ("device_target", "CPU", STR, "CPU, GPU or Ascend; an unavailable target falls back to CPU"),
        ("memory_limit_gb", 0.0, FLOAT, "(suite) stop with one line (exit 1) when the process holds more than N "
                                        "GiB; 0 = only when the machine is about to run out of memory"),
    ],
    "Dataset": [
        ("dataset", "", STR, "'' (or 'imagenet') = a custom folder/annotation dataset"),
        ("data_dir", "./", STR, "dataset root: split folders or Aircraft-style annotation files"),
        ("dataset_format", "auto", choice("auto", *layouts.NAMES), layouts.FORMAT_HELP),
        ("label_level", "variant", choice("variant", "family", "manufacturer"),
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
        ("aug_repeats", 0, INT, "repeated augmentation: each image appears N times per epoch, differently "
                                "augmented (MindCV's RepeatAugSampler); 0 = off"),
    ],
    "Your data (suite)": [
        ("image_column", "image", STR, "(suite) list layout: CSV column of the image paths"),
        ("label_column", "label", STR, "(suite) list layout: CSV column of the labels"),
        ("list_dir", "", STR, "(suite) folder of the <split>.csv/.txt list files; empty = data_dir"),
        ("val_fraction", 0.0, FLOAT, "(suite) finetune.py: hold out this fraction of an unsplit folder as val"),
        ("split_seed", 0, INT, "(suite) seed of the val_fraction split"),
        ("check_cache_dir", "", STR, "(suite) where image checks are remembered; empty = ~/.cache/..., off = none"),
        ("imbalance_warn_ratio", 10.0, FLOAT, "(suite) warn when largest/smallest class exceeds this (0 = never)"),
        ("task", "single", choice(*BEST_METRICS), "(suite) single (one class per image) or multilabel (a set of "
                                                 "labels per image, list layout; needs loss: bce)"),
        ("label_delimiter", ";", STR, "(suite) task: multilabel: separator of an image's labels in a list file"),
    ],
    "Augmentation": [
        ("image_resize", 224, INT, "input size in pixels"),
        ("scale", [0.08, 1.0], PAIR, "random-resized-crop area range"),
        ("ratio", [0.75, 1.333], PAIR, "random-resized-crop aspect range"),
        ("hflip", 0.5, FLOAT, "horizontal flip probability"),
        ("vflip", 0.0, FLOAT, "vertical flip probability"),
        ("color_jitter", 0.4, to_color_jitter,
         "colour jitter: one strength, or 3 (brightness contrast saturation) or 4 (+ hue) values"),
        ("interpolation", "bilinear", _name(*INTERPOLATIONS), "resize interpolation: " + ", ".join(INTERPOLATIONS)),
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
        ("tf_same_padding", False, BOOL, "(suite) TensorFlow 'same' padding in strided convs "
                                         "(Keras-converted weights)"),
        ("drop_rate", None, OPT_FLOAT, "dropout rate"),
        ("drop_path_rate", None, OPT_FLOAT, "drop-path rate"),
        ("pretrained", False, BOOL, "load MindCV's pretrained weights (needs internet)"),
        ("ckpt_path", "", STR, "initialise from this local checkpoint"),
        ("resume_opt", False, BOOL, "MindCV key; accepted, resuming is done with 'resume'"),
        ("keep_checkpoint_max", 10, INT, "keep at most N epoch checkpoints"),
        ("ckpt_save_dir", "./ckpt", STR, "output folder: checkpoints, results, resolved config"),
        ("ckpt_save_interval", 1, INT, "save an epoch checkpoint every N epochs"),
        ("ckpt_save_policy", "latest_k", choice("latest_k", "top_k", optional=True), "latest_k or top_k"),
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
         "no augmentation) and train only the head on the cached features (with freeze_epochs: during the "
         "frozen epochs); needs freeze_backbone or freeze_epochs, and freeze_bn_stats, no mixup/cutmix"),
        ("lr_mult", {}, to_multipliers, "(suite) lr multipliers by name prefix, e.g. classifier=1.2 features.13=1.05"),
        ("wd_mult", {}, to_multipliers, "(suite) weight-decay multipliers by name prefix"),
        ("resume", "", STR, "(suite) continue a run: 'auto' (its ckpt_save_dir) or a resume.ckpt path"),
        ("recovery_interval", 0, INT, "(suite) also write the resume state every N training steps (0 = off)"),
        ("overwrite", False, BOOL, "(suite) reuse a ckpt_save_dir holding a previous run (else a new <dir>_N)"),
        ("early_stop_patience", 0, INT, "(suite) stop after N validations without a better top1 (0 = off)"),
    ],
    "Imbalance and schedule (suite)": [
        ("class_weights", None, to_class_weights,
         "(suite) weighted cross-entropy: none, balanced (n / (classes * count of the class) over the training "
         "split) or one weight per class (task: multilabel: per-label positive weights of the BCE, balanced = "
         "negatives / positives of the label)"),
        ("sampler", "none", choice("none", "balanced"),
         "(suite) balanced: each epoch draws the training split with replacement, every class equally likely"),
        ("best_metric", "top1", choice(*dict.fromkeys(sum(BEST_METRICS.values(), ()))),
         "(suite) the validation metric that picks the best checkpoint and drives early stopping (task: multilabel: "
         "map, f1 or val_loss)"),
        ("early_stop_min_delta", 0.0, FLOAT, "(suite) a validation counts as better only by more than this"),
        ("freeze_epochs", 0, INT, "(suite) train the first N epochs with the backbone frozen (as freeze_backbone), "
                                  "then unfreeze what freeze_layers/freeze_patterns leave trainable"),
        ("unfreeze_warmup_epochs", 1, INT, "(suite) with freeze_epochs: the backbone's lr rises linearly from 0 to "
                                           "the schedule's over this many epochs after the switch (0: at once)"),
        ("tensorboard", False, BOOL, "(suite) write TensorBoard scalars to <ckpt_save_dir>/tensorboard/"),
    ],
    "Time budget and weight averaging (suite)": [
        ("max_time", None, to_duration, "(suite) time budget of the training loop (90s, 30m, 2h; none = off): the "
                                        "run stops before an epoch that would not fit, keeping its best checkpoint "
                                        "(the lr schedule of epoch_size is cut there, not compressed); start-up is "
                                        "not counted"),
        ("average_checkpoints", 0, INT, "(suite) after the last epoch, write {model}_avg.ckpt: the mean of the first N "
                                        "kept epoch checkpoints (top_k: the N best by best_metric; latest_k: the N "
                                        "newest), BatchNorm statistics recomputed on the training data, validated; "
                                        "0 = off; at most keep_checkpoint_max"),
        ("image_resize_schedule", [], to_resize_schedule,
         "(suite) progressive resizing: [[E, S], ...] trains at S px once E epochs are done (e.g. [[0, 64], [3, 96]]; "
         "CLI 0:64 3:96); validation and the later scripts use image_resize (FixRes: train low, test high)"),
    ],
    "Distillation (suite)": [
        ("teacher_model", None, OPT_STR, "(suite) distil from this fine-tuned model (e.g. mobilenet_v2_100); needs "
                                         "teacher_ckpt"),
        ("teacher_ckpt", "", STR, "(suite) the teacher's weights: a checkpoint of finetune.py trained on the same "
                                  "classes, or its run folder (its {teacher_model}_best.ckpt)"),
        ("distill_alpha", 0.5, FLOAT, "(suite) weight of the hard-label loss; the teacher's term gets 1 - alpha "
                                      "(0 = pure distillation)"),
        ("distill_temperature", 4.0, FLOAT, "(suite) softmax temperature T of the teacher's and student's logits"),
        ("cache_teacher", False, BOOL, "(suite) compute the teacher's logits once before training (needs fixed "
                                       "training views: no random augmentation)"),
    ],
    "Optimizer": [
        ("opt", "adam", _name(*OPTIMIZERS), "optimizer: " + ", ".join(OPTIMIZERS)),
        ("momentum", 0.9, FLOAT, "momentum"),
        ("weight_decay", 1e-6, FLOAT, "weight decay"),
        ("use_nesterov", False, BOOL, "Nesterov momentum"),
        ("weight_decay_filter", "disable", choice("disable", "auto", "norm_and_bias"),
         "disable, auto or norm_and_bias"),
        ("filter_bias_and_bn", True, BOOL, "older MindCV key; accepted"),
        ("eps", 1e-10, FLOAT, "optimizer epsilon"),
    ],
    "Scheduler": [
        ("scheduler", "cosine_decay", _name(*SCHEDULERS),
         "lr schedule: " + ", ".join(SCHEDULERS) + " (warmup_cosine_decay = cosine_decay, as in MindCV)"),
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
        ("loss", "ce", _name(*LOSSES), "loss: " + ", ".join(LOSSES) + " (any case)"),
        ("label_smoothing", 0.0, FLOAT, "label smoothing"),
        ("aux_factor", 0.0, FLOAT, "auxiliary loss factor"),
        ("reduction", "mean", _name("mean", "sum", "none"), "loss reduction: mean, sum or none"),
    ],
    "Mixed precision": [
        ("amp_level", "O0", choice("O0", "O1", "O2", "O3"), "training AMP level (O0 on CPU)"),
        ("val_amp_level", "O0", choice("O0", "O1", "O2", "O3"),
         "AMP level of validate.py/predict.py/export.py (O0 on CPU; validation during training runs at amp_level)"),
        ("amp_cast_list", None, OPT_STR, "cells to cast"),
        ("loss_scale_type", "fixed", _name("fixed", "dynamic", "auto"),
         "fixed, dynamic (halve on overflow and skip the step, double after 2000 good steps) or auto (= fixed)"),
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

# Keys accepted so that MindCV's config files (and older ones) run, but that cannot act here, with the
# reason; a run that sets one away from its default prints one note naming it. Every other key of the
# table is read by the code (tests/cli/test_mindcv_configs.py checks both).
NO_EFFECT = {
    "dataset_download": "it downloads MindCV's built-in datasets (MNIST, CIFAR), which the suite does not read",
    "dataset_sink_mode": "the suite feeds batches step by step, which gives the same results",
    "resume_opt": "resume restores the optimizer state with the weights",
    "filter_bias_and_bn": "an older MindCV key, replaced by weight_decay_filter",
    "dynamic_loss_scale": "an older MindCV key, replaced by loss_scale_type: dynamic",
    "enable_modelarts": "it is for Huawei ModelArts jobs only",
    "multi_data_url": "it is for Huawei ModelArts jobs only",
    "data_url": "it is for Huawei ModelArts jobs only",
    "ckpt_url": "it is for Huawei ModelArts jobs only",
    "train_url": "it is for Huawei ModelArts jobs only",
}


def no_effect_notes(cfg):
    """One note per key of ``NO_EFFECT`` that ``cfg`` sets away from its default."""
    table = option_table()
    return [f"{key}: {getattr(cfg, key)!r} has no effect here: {why}" for key, why in NO_EFFECT.items()
            if getattr(cfg, key) != table[key][0]]


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
MERGE_TAG = "tag:yaml.org,2002:merge"  # the ``<<`` key


def _merged_pairs(node, path):
    """The ``(key node, value node)`` pairs the merge keys of mapping ``node`` bring, a key's winner first: by
    YAML's rule an earlier merged mapping wins over a later one, a mapping's own keys over those it merges
    (PyYAML 6 lets the later mapping win)."""
    pairs = []
    for key_node, value_node in node.value:
        if key_node.tag != MERGE_TAG:
            continue
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                raise UsageError(f"{path}:{key_node.start_mark.line + 1}: '<<' merges a mapping or a list of "
                                 "mappings")
            pairs += [pair for pair in source.value if pair[0].tag != MERGE_TAG] + _merged_pairs(source, path)
    return pairs


def _yaml_problem(path, err):
    """PyYAML's error in one line, at ``file:line`` as the suite's other config errors (its own first line
    has no position: ``while parsing a flow sequence``)."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    words = "; ".join(part for part in (getattr(err, "context", None), getattr(err, "problem", None)) if part)
    if mark is None or not words:
        return f"{path}: not valid YAML: {first_line(err)}"
    return f"{path}:{mark.line + 1}: not valid YAML (column {mark.column + 1}): {words}"


def _read_mapping(path):
    """``[(key, value, line)]`` of a YAML file's top-level mapping, in file order; a key given twice
    is an error (PyYAML silently keeps the last one). A merge key (``<<: *base`` or ``<<: [*a, *b]``) is
    read as YAML defines it: its mappings' keys come first (an earlier mapping wins), the file's own
    keys override them."""
    problem = input_file_problem(path)
    if problem == "not found":
        raise UsageError(f"config file not found: {path}")
    if problem:  # a folder, or 0 bytes: not the config the user meant (an empty file would mean all defaults)
        raise UsageError(f"config {path} is {problem}; name a YAML file")
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except UnicodeDecodeError as err:
        raise UsageError(f"{path}: not a UTF-8 YAML text file (byte {err.start}); is it a config file?") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return []
        if not isinstance(node, yaml.MappingNode):
            raise UsageError(f"{path}: expected a mapping of keys to values")
        items, first_line_of = [], {}
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:
                key, line = "<<", key_node.start_mark.line + 1  # one per mapping too: a list merges several
            else:
                key, line = loader.construct_object(key_node, deep=True), key_node.start_mark.line + 1
            if key in first_line_of:
                raise UsageError(f"{path}:{line}: key '{key}' is given twice (first on line {first_line_of[key]})")
            first_line_of[key] = line
            if key_node.tag != MERGE_TAG:
                items.append((key, loader.construct_object(value_node, deep=True), line))
        merged = {}
        for key_node, value_node in _merged_pairs(node, path):
            key = loader.construct_object(key_node, deep=True)
            if key not in first_line_of and key not in merged:
                merged[key] = (key, loader.construct_object(value_node, deep=True), key_node.start_mark.line + 1)
        return list(merged.values()) + items
    except yaml.YAMLError as err:
        raise UsageError(_yaml_problem(path, err)) from None
    finally:
        loader.dispose()


def load_yaml(path, table, _seen=()):
    """Raw ``{key: (value, "file:line")}`` of a YAML config file; unknown keys are errors.

    ``_base_: other.yaml`` (relative to the file) loads that file first and overrides it. Values are
    converted later, once, on the merged result, so that a file or a flag can override a bad value.
    """
    if os.path.realpath(path) in _seen:
        raise UsageError(f"{path}: _base_ files include each other")
    items = _read_mapping(path)
    values = {}
    for key, value, line in items:
        if key == BASE_KEY and value:
            base_path = os.path.join(os.path.dirname(os.path.abspath(path)), str(value))
            values.update(load_yaml(base_path, table, _seen + (os.path.realpath(path),)))
    for key, value, line in items:
        if key == BASE_KEY:
            continue
        if key not in table:
            raise UsageError(f"{path}:{line}: unknown key '{key}'{_closest(str(key), table)}")
        values[key] = (value, f"{path}:{line}")
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
    """Resolve the configuration of a script: defaults < ``_base_`` < YAML < CLI, then convert and
    check the merged values once (an error names the key, the value and the file:line or flag it
    came from). Returns a Namespace."""
    table = option_table(extra)
    parser = build_parser(description, table)
    cli, unknown = parser.parse_known_args(argv)
    for item in unknown:
        if item.startswith("-"):
            key = item.lstrip("-").split("=", 1)[0]
            raise UsageError(f"unknown option '--{key}'{_closest(key, table)}")
        raise UsageError(f"unexpected argument '{item}'")
    given = load_yaml(cli.config, table) if cli.config else {}
    given.update({key: (value, f"flag --{key}") for key, value in vars(cli).items() if key != "config"})
    values = {key: spec[0] for key, spec in table.items()}
    for key, (value, where) in given.items():
        values[key] = _convert(key, value, table, where)
    values["config"] = cli.config
    check_values(values, {key: where for key, (_, where) in given.items()})
    return argparse.Namespace(**values)


# key -> (test, requirement) for values that can never work
_RULES = {
    "lr": (lambda v: 0 <= v < float("inf"), ">= 0 and finite"),
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
    "crop_pct": (lambda v: v > 0, "> 0 (above 1 the centre crop is padded, as in MindCV)"),
    "mode": (lambda v: v in (0, 1), "0 (GRAPH) or 1 (PYNATIVE)"),
    "memory_limit_gb": (lambda v: v >= 0, ">= 0 (0 = no limit of its own)"),
    "seed": (lambda v: 0 <= v < 2 ** 32, "in [0, 2**32 - 1] (MindSpore's range)"),
    "momentum": (lambda v: v >= 0, ">= 0"),
    "ema_decay": (lambda v: 0 < v < 1, "in (0, 1)"),
    "loss_scale": (lambda v: v >= 1, ">= 1 (as in MindCV)"),
    "aug_repeats": (lambda v: v >= 0, ">= 0"),
    "early_stop_min_delta": (lambda v: v >= 0, ">= 0"),
    "freeze_epochs": (lambda v: v >= 0, ">= 0"),
    "average_checkpoints": (lambda v: v >= 0, ">= 0 (0 = off)"),
    "unfreeze_warmup_epochs": (lambda v: v >= 0, ">= 0"),
    "mean": (lambda v: len(v) == 3, "3 values, one per channel (images are read as RGB)"),
    "std": (lambda v: len(v) == 3 and min(v) > 0, "3 values > 0, one per channel (images are read as RGB)"),
    "distill_alpha": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "distill_temperature": (lambda v: v > 0, "> 0"),
}


def check_values(values, sources=None):
    """Refuse values (and combinations) that can never work, naming the key and where it was set."""
    sources = sources or {}
    for key, (test, requirement) in _RULES.items():
        if key in values and not test(values[key]):
            where = f" ({sources[key]})" if key in sources else ""
            raise UsageError(f"'{key}' must be {requirement}, got {values[key]!r}{where}")
    if values.get("seed", 0) + values.get("epoch_size", 0) >= 2 ** 32:
        raise UsageError(f"'seed' + 'epoch_size' must stay below 2**32 (epoch e's data is seeded with seed + e), "
                         f"got {values['seed']}")
    if values.get("overwrite") and values.get("resume"):
        raise UsageError(f"'overwrite: True' and 'resume: {values['resume']}' contradict each other: resume continues "
                         "a run, overwrite replaces it; drop one")
    if values.get("aug_repeats") and values.get("num_samples"):
        raise UsageError("'aug_repeats' and 'num_samples' cannot be set together (as in MindCV)")
    if values.get("cache_features"):
        _check_cache_features(values)
    _check_task(values)
    _check_imbalance_and_schedule(values)
    _check_averaging_and_resizing(values)
    _check_distillation(values)


def update(cfg, source, **changes):
    """Change keys of a config that :func:`parse_config` checked, through the same value and cross-key checks,
    so that a checked config stays checked: a change that breaks a rule is refused (UsageError) naming
    ``source``, what made it (e.g. ``--val_fraction``), since the user never typed that value; nothing is
    changed then. Returns ``cfg``."""
    unknown = sorted(set(changes) - set(vars(cfg)))
    if unknown:
        raise AttributeError(f"{source} changes {', '.join(unknown)}, not keys of this config")
    where = f"set by {source}"
    try:
        check_values({**vars(cfg), **changes}, dict.fromkeys(changes, where))
    except UsageError as err:
        if where in str(err):
            raise
        made = ", ".join(f"{key}={value!r}" for key, value in changes.items())
        raise UsageError(f"{err} ({where}: {made})") from None
    for key, value in changes.items():
        setattr(cfg, key, value)
    return cfg


def _check_cache_features(values):
    """Cached features are what training would compute only with the whole backbone (and its
    BatchNorm statistics) frozen and no mixing of images."""
    if not (values["freeze_backbone"] or values.get("freeze_epochs")):
        raise UsageError("'cache_features' needs 'freeze_backbone: True' or 'freeze_epochs' > 0")
    if not values["freeze_bn_stats"]:
        raise UsageError("'cache_features' needs 'freeze_bn_stats: True'")
    for key, why in (("sampler", "the cached features are read in a plain shuffle"),
                     ("aug_repeats", "cached features are not augmented")):
        if values.get(key) not in (None, 0, "none"):
            raise UsageError(f"'cache_features' cannot be used with '{key}' ({why})")
    if values.get("freeze_epochs") and values.get("ema"):
        raise UsageError("'cache_features' with 'freeze_epochs' cannot be used with 'ema: True' (not supported)")
    for key in ("mixup", "cutmix"):
        if values[key] > 0:
            raise UsageError(f"'cache_features' cannot be used with '{key}' > 0 (images are not mixed in "
                             "cached features)")


def _check_averaging_and_resizing(values):
    """Averaging reads the epoch checkpoints the run keeps; cached features have one image size."""
    if values.get("average_checkpoints", 0) > values.get("keep_checkpoint_max", 10):
        raise UsageError(f"'average_checkpoints' {values['average_checkpoints']} is more than the "
                         f"keep_checkpoint_max {values['keep_checkpoint_max']} epoch checkpoints a run keeps; "
                         "raise keep_checkpoint_max or lower average_checkpoints")
    if values.get("image_resize_schedule") and values.get("cache_features"):
        raise UsageError("'image_resize_schedule' cannot be used with 'cache_features' (cached features have one "
                         "image size)")


def _check_task(values):
    """A multi-label run trains with binary cross-entropy and is judged by multi-label metrics (and the reverse)."""
    task = values.get("task", "single")
    if values.get("label_delimiter", ";") == "":
        raise UsageError("'label_delimiter' must not be empty")
    if values.get("best_metric", "top1") not in BEST_METRICS[task]:
        raise UsageError(f"'best_metric: {values['best_metric']}' is not a metric of 'task: {task}': use "
                         f"{', '.join(BEST_METRICS[task])}")
    if task == "multilabel":
        if values.get("loss", "bce") != "bce":
            raise UsageError(f"'task: multilabel' needs 'loss: bce' (sigmoid + binary cross-entropy), got "
                             f"'{values['loss']}'")
        if values.get("val_fraction"):
            raise UsageError("'val_fraction' splits a folder of class folders, which cannot hold label sets: not "
                             "available with 'task: multilabel' (give train and val list files)")
        if values.get("sampler") == "balanced":
            raise UsageError("'sampler: balanced' draws by class, which a multi-label image has several of: not "
                             "available with 'task: multilabel' (class_weights: balanced weighs positives instead)")


def _check_imbalance_and_schedule(values):
    """freeze_epochs needs something to unfreeze; the balanced sampler draws the whole split itself."""
    if values.get("freeze_epochs"):
        if values.get("freeze_backbone"):
            raise UsageError("'freeze_epochs' cannot be used with 'freeze_backbone: True' (nothing would unfreeze)")
        if values.get("gradient_accumulation_steps", 1) > 1:
            raise UsageError("'freeze_epochs' cannot be used with 'gradient_accumulation_steps' > 1 (the backbone "
                             "changed during the frozen epochs in GRAPH mode with accumulation: not supported)")
    if values.get("sampler") == "balanced" and (values.get("aug_repeats") or values.get("num_samples")):
        raise UsageError("'sampler: balanced' cannot be set with 'aug_repeats' or 'num_samples'")
    if (values.get("class_weights") is not None and values.get("loss", "ce") != "ce"
            and values.get("task", "single") == "single"):
        raise UsageError(f"'class_weights' needs 'loss: ce', got '{values['loss']}'")


def random_augmentation(values):
    """The configured keys that make the training view of an image vary between epochs (empty: fixed
    views). The crop is fixed only with ``scale`` and ``ratio`` both [1, 1] (the whole image, or its
    centre square); colour jitter of strength 0 changes nothing."""
    jitter = values.get("color_jitter")
    jitter = [] if jitter is None else jitter if isinstance(jitter, (list, tuple)) else [jitter]
    on = {"scale": list(values["scale"]) != [1.0, 1.0], "ratio": list(values["ratio"]) != [1.0, 1.0],
          "hflip": values["hflip"] > 0, "vflip": values["vflip"] > 0, "color_jitter": any(float(v) > 0 for v in jitter),
          "auto_augment": bool(values.get("auto_augment")), "re_prob": values["re_prob"] > 0,
          "mixup": values["mixup"] > 0, "cutmix": values["cutmix"] > 0, "aug_splits": values.get("aug_splits", 0) > 0}
    return [key for key, varies in on.items() if varies]


def _check_distillation(values):
    """A teacher is a model and its weights; cached logits need views that never change and the images the
    head-only linear probe does not see."""
    model, ckpt = values.get("teacher_model"), values.get("teacher_ckpt")
    if bool(model) != bool(ckpt):
        raise UsageError("'teacher_model' and 'teacher_ckpt' go together: " + ("set teacher_ckpt (the teacher's "
                         "checkpoint or run folder)" if model else "set teacher_model (the teacher's architecture)"))
    if values.get("cache_teacher") and not model:
        raise UsageError("'cache_teacher: True' needs a teacher (teacher_model and teacher_ckpt)")
    if model and values.get("task", "single") != "single":
        raise UsageError("'teacher_model' distils a softmax over one class per image: not available with 'task: "
                         f"{values['task']}'")
    if model and values.get("cache_features"):
        raise UsageError("'teacher_model' cannot be used with 'cache_features' (the head trains on cached features: "
                         "the teacher would not see the images)")
    if values.get("cache_teacher"):
        varying = random_augmentation(values)
        if varying:
            raise UsageError(f"'cache_teacher: True' needs fixed training views, but '{varying[0]}' augments at "
                             f"random ({', '.join(varying)} on); set cache_teacher: False (the teacher then sees each "
                             "augmented batch) or turn the augmentation off (scale and ratio [1, 1], hflip 0, ...)")


# what a command does to the folder it names, not a setting of the run: a config.yaml used again with
# --config must not resume (or wipe) the run that wrote it
COMMAND_ONLY_KEYS = ("resume", "overwrite")


def save_config(cfg, path):
    """Write the resolved configuration as YAML (readable back with ``--config``), without
    ``COMMAND_ONLY_KEYS``."""
    table = option_table()  # a script's own flags (e.g. finetune.py's dry_run) are not config keys
    data = {k: v for k, v in vars(cfg).items() if k in table and k not in COMMAND_ONLY_KEYS}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
