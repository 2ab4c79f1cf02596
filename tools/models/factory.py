"""Model creation and weight loading, with MindCV's pitfalls handled in one place.

* ``pretrained: True`` downloads MindCV's ImageNet checkpoint (then loaded like ``ckpt_path``);
  offline, the failure is one line that points at ``ckpt_path``.
* ``ckpt_path`` loads a local checkpoint (MindCV's or this suite's). A classifier whose shape
  differs from ``num_classes`` is dropped, as are entries that are not model weights (optimizer
  state such as ``adam_m.*``), so a 1000-class checkpoint initialises a 100-class model with no
  manual stripping. A checkpoint of another architecture is refused.
"""
import json
import logging
import os
import urllib.error
from contextlib import contextmanager

from tools.core.errors import DataError, UsageError
from tools.core.fileio import first_line, input_file_problem
from tools.models.families import head_prefix, pretrained_value
from tools.models.mindcv_fixes import create_model_fixed
from tools.models.tf_padding import apply_tf_same_padding

import mindspore as ms
import numpy as np
from mindcv.models.helpers import get_checkpoint_download_root
from mindcv.models.registry import list_models
from mindcv.utils.amp import auto_mixed_precision
from mindcv.utils.download import DownLoad

CLASS_NAMES_KEY = "suite_class_names"
TASK_KEY = "suite_task"  # present when not single-label
MIN_MATCHED_FRACTION = 0.5


def create_network(cfg, num_classes, init_from_ckpt=True):
    """``create_model`` for ``cfg.model`` with ``num_classes`` outputs, initialised as configured."""
    if cfg.model not in list_models():
        import difflib

        close = difflib.get_close_matches(cfg.model, list_models(), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UsageError(f"unknown model '{cfg.model}'{hint}")
    kwargs = dict(model_name=cfg.model, num_classes=num_classes, in_channels=cfg.in_channels)
    for key in ("drop_rate", "drop_path_rate"):
        if getattr(cfg, key) is not None:
            kwargs[key] = getattr(cfg, key)
    network = _build(cfg.model, kwargs)
    if cfg.tf_same_padding:
        print(f"tf_same_padding: {apply_tf_same_padding(network)} strided convolutions use TensorFlow 'same' padding")
    if cfg.pretrained and init_from_ckpt:
        print(f"pretrained weights: {load_weights(network, fetch_pretrained(cfg.model), cfg.model)}")
    if cfg.ckpt_path and init_from_ckpt:
        report = load_weights(network, cfg.ckpt_path, cfg.model)
        print(f"initialised from {cfg.ckpt_path}: {report}")
    return network


def _build(model_name, kwargs):
    """``create_model`` with MindCV's construction failures as one line naming the model."""
    try:
        return create_model_fixed(pretrained=False, **kwargs)
    except TypeError as err:
        unsupported = [k for k in ("drop_rate", "drop_path_rate") if k in kwargs and k in str(err)]
        if unsupported:
            raise UsageError(f"model {model_name} does not accept {unsupported[0]}; leave it unset") from None
        raise DataError(f"model {model_name} cannot be built here: {first_line(err)}") from None
    except (ValueError, RuntimeError, AssertionError, KeyError, AttributeError) as err:
        raise DataError(f"model {model_name} cannot be built here: {first_line(err)}") from None


def check_input_size(network, cfg):
    """Run the network once, in PyNative mode and inference, on one blank image of the configured size,
    so that a model that cannot take it (a transformer's fixed patch grid, a too-small image for the
    downsampling) stops before training in one line instead of a traceback at the first step."""
    mode, was_training = ms.get_context("mode"), network.training
    size = cfg.image_resize
    ms.set_context(mode=ms.PYNATIVE_MODE)
    network.set_train(False)
    try:
        network(ms.Tensor(np.zeros((1, cfg.in_channels, size, size), np.float32)))
    except AttributeError as err:  # MindCV's code calls an API this MindSpore no longer has
        raise DataError(f"model {cfg.model} cannot run on MindSpore {ms.__version__}: {first_line(err)}") from None
    except (ValueError, RuntimeError, TypeError, IndexError, AssertionError) as err:
        if "Unsupported op" in str(err):
            raise DataError(f"model {cfg.model} cannot run on {ms.get_context('device_target')} with MindSpore "
                            f"{ms.__version__}: {first_line(err).split(', Please')[0]}") from None
        trained_at = pretrained_value(cfg.model, "input_size")
        if trained_at and trained_at[-1] == size:  # not the image size: the model's code and this MindSpore
            raise DataError(f"model {cfg.model} cannot run on MindSpore {ms.__version__}, even at its training "
                            f"size {size} px: {first_line(err)}") from None
        hint = (f"it was trained at {trained_at[-1]} px" if trained_at
                else "models with a fixed patch grid need their training size, often 224")
        raise DataError(f"model {cfg.model} cannot take {size}x{size} images (image_resize {size}; {hint}): "
                        f"{first_line(err)}") from None
    finally:
        network.set_train(was_training)
        ms.set_context(mode=mode)


def checkpoint_network(cfg, params, class_names):
    """The network of ``cfg.model`` with the checkpoint ``params`` (read from ``cfg.ckpt_path``), in eval mode
    and at ``val_amp_level``."""
    network = create_network(cfg, len(class_names), init_from_ckpt=False)
    load_weights(network, cfg.ckpt_path, cfg.model, params=params, drop_head=False)
    if cfg.val_amp_level != "O0":  # runtime.setup leaves it O0 on CPU
        auto_mixed_precision(network, cfg.val_amp_level)
    network.set_train(False)
    return network


def numbered_classes(cfg):
    """Class names ``0 .. num_classes-1`` for a checkpoint that holds none (MindCV's)."""
    if not cfg.num_classes:
        raise UsageError(f"{cfg.ckpt_path} holds no class names (not written by finetune.py): set num_classes")
    return [str(i) for i in range(cfg.num_classes)]


def fetch_pretrained(model_name):
    """Path of MindCV's ImageNet checkpoint for ``model_name``, downloading it when missing.

    MindCV leaves an empty file behind when a download fails, which breaks every later run;
    here a failed or empty download is removed and reported in one line.
    """
    url = pretrained_value(model_name, "url")
    if not url:
        raise DataError(f"MindCV has no pretrained weights for {model_name}; set pretrained: False and ckpt_path")
    path = os.path.join(get_checkpoint_download_root(), os.path.basename(url))
    if os.path.isfile(path) and os.path.getsize(path) > 0:
        return path
    try:
        DownLoad().download_url(url, path=os.path.dirname(path))
    except (urllib.error.URLError, OSError, ConnectionError, ValueError) as err:
        reason = err.__class__.__name__
    else:
        reason = "empty file"
        if os.path.isfile(path) and os.path.getsize(path) > 0:
            return path
    if os.path.isfile(path):
        os.remove(path)
    raise DataError(f"downloading pretrained weights for {model_name} failed ({reason}); offline, set "
                    "pretrained: False and ckpt_path: /path/to/weights.ckpt")


@contextmanager
def quiet_mindspore_log():
    """Silence MindSpore's logger inside the block: its failed loads and saves log a line to stderr before
    raising, and the suite reports the failure in one line of its own."""
    logger = ms.log._get_logger()
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def read_checkpoint(path):
    """``ms.load_checkpoint`` with its CRC check: one-line errors for a missing, unreadable or damaged file.

    The suite's checkpoints carry a CRC; one without (MindCV's) loads unchecked, as MindSpore does.
    """
    problem = input_file_problem(path)
    if problem == "not found":
        raise DataError(f"checkpoint not found: {path}")
    if problem:
        raise DataError(f"checkpoint {path} is {problem}{_checkpoints_inside(path)}")
    try:
        with quiet_mindspore_log():
            return ms.load_checkpoint(path, crc_check=True)
    except (ValueError, RuntimeError, OSError, TypeError) as err:
        if "crc check" in str(err.__cause__ or ""):  # MindSpore words a CRC mismatch as a permission problem
            raise DataError(f"checkpoint {path} is damaged (its CRC checksum does not match the content)") from None
        raise DataError(f"cannot read checkpoint {path}: {first_line(err)}") from None


def _checkpoints_inside(folder):
    """For a folder given as a checkpoint: '; it holds X.ckpt' naming its best checkpoint (or any)."""
    names = sorted(n for n in os.listdir(folder) if n.endswith(".ckpt")) if os.path.isdir(folder) else []
    best = [n for n in names if n.endswith("_best.ckpt")] or names
    return f"; it holds {os.path.join(folder, best[0])}: give that file" if best else ""


def load_weights(network, path, model_name, params=None, drop_head=True):
    """Load matching tensors of a checkpoint into ``network``; return a short report string.

    With ``drop_head=False`` (evaluation) a classifier of another shape is an error.
    """
    params = read_checkpoint(path) if params is None else params
    head = head_prefix(model_name) + "."
    own = {p.name: p for p in network.get_parameters()}
    kept, dropped, ignored = {}, [], 0
    for name, value in params.items():
        if name not in own:
            ignored += 1  # optimizer state, step counters, metadata, other heads
            continue
        if tuple(value.shape) == tuple(own[name].shape):
            kept[name] = value
        elif name.startswith(head) and drop_head:
            dropped.append(name)
        else:
            raise DataError(f"{path}: '{name}' has shape {tuple(value.shape)}, the model's is "
                            f"{tuple(own[name].shape)}: the checkpoint is not a {model_name}")
    matched = len(kept) + len(dropped)
    if matched < MIN_MATCHED_FRACTION * len(own):
        raise DataError(f"{path}: only {matched} of {len(own)} {model_name} weights found: "
                        "the checkpoint is of another architecture")
    ms.load_param_into_net(network, kept, strict_load=False)
    missing = len(own) - len(kept)
    return (f"{len(kept)} tensors loaded, {len(dropped)} classifier tensors dropped (shape differs from "
            f"num_classes), {ignored} non-model entries ignored, {missing} left at initialisation")


def check_task(params, cfg):
    """A checkpoint trained for another task than ``cfg.task`` (e.g. multi-label read with a config that lacks
    ``task``) is refused in one line: its outputs would be read with the wrong activation."""
    saved = params.get(TASK_KEY) or "single"
    saved = saved if isinstance(saved, str) else "single"
    if saved != cfg.task:
        raise UsageError(f"{cfg.ckpt_path} was trained with task: {saved}, this config has task: {cfg.task}: pass the "
                         f"run's config.yaml (or --task {saved})")


def class_names_of(params):
    """Class names stored in a checkpoint by this suite, or None."""
    value = params.get(CLASS_NAMES_KEY)
    return json.loads(value) if isinstance(value, str) else None
