"""Knowledge distillation (``teacher_model``, ``teacher_ckpt``): the student learns from a fine-tuned
teacher's outputs as well as from the labels (Hinton et al. 2015; timm's ``--kd-model-name``).

    loss = alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))

``CE`` is the run's own loss (``loss``, ``label_smoothing``, ``class_weights`` and mixup/cutmix's mixed
labels act on this hard term only); the KL term is unweighted and reduced like it (``reduction``).
"A good teacher is patient and consistent" (Beyer et al. 2022): the teacher sees exactly the batch the
student sees, inside the train step, so with mixup/cutmix it teaches on the mixed image and its soft
targets follow the mix by themselves. The teacher runs in inference mode (BatchNorm on its running
statistics, dropout off) and stays outside the train step's cell tree: its parameters are not trained,
not averaged by EMA, not in the optimizer and not in any checkpoint or resume state (a resumed run reloads
it from ``teacher_ckpt``); under msrun each rank teaches its own shard.

``cache_teacher: True`` runs the teacher once over the training views before training, where those views
are fixed (no random augmentation: tools.core.config.random_augmentation names what would make them
vary), and each step looks its logits up: the training labels then carry the sample's index
(``index * C + label``), which the loss network splits again.
"""
import copy
import dataclasses
import os
import time
from typing import Any, Optional

from tools.core.config import update
from tools.core.errors import DataError, UsageError
from tools.datasets.loader import build_loader, open_split
from tools.evaluate.inference import predict_logits
from tools.models.factory import check_input_size, class_names_of, create_network, load_weights, read_checkpoint
from tools.train.run_files import CONFIG_FILE_NAME, best_checkpoint_name

import mindspore as ms
import numpy as np
import yaml
from mindspore import Parameter, Tensor, nn, ops

TEACHER_PREFIX = "teacher."  # the teacher's parameter names: GRAPH mode needs them apart from the student's


@dataclasses.dataclass
class Teacher:
    """The loaded teacher and where it came from."""

    network: Any  # in inference mode, parameters renamed teacher.*, requires_grad False
    model: str
    checkpoint: str  # the file read (a run folder's best checkpoint)
    cached_logits: Optional[np.ndarray] = None  # cache_teacher: (training images, classes), by sample index
    cache_seconds: Optional[float] = None

    def facts(self, cfg):
        """summary.json's entries of a distilled run."""
        return {"teacher": {"model": self.model, "checkpoint": self.checkpoint,
                            "cached": self.cached_logits is not None},
                "distill_alpha": cfg.distill_alpha, "distill_temperature": cfg.distill_temperature}

    def plan_line(self, cfg):
        """The dry-run plan's line."""
        how = ("logits cached once over the fixed training views (not done in a dry run)" if cfg.cache_teacher
               else "in inference mode on each training batch")
        return (f"distillation: teacher {self.model} from {self.checkpoint}, {how}; loss {cfg.distill_alpha:g} x "
                f"{cfg.loss} + {1 - cfg.distill_alpha:g} x T^2 KL at T {cfg.distill_temperature:g}")


def teacher_checkpoint(cfg):
    """``(checkpoint file, the run's config or {})`` of ``teacher_ckpt``: a checkpoint file, or a run folder's
    ``{teacher_model}_best.ckpt`` with the folder's config.yaml (which must name ``teacher_model``)."""
    path = cfg.teacher_ckpt
    if not os.path.isdir(path):
        return path, {}
    run_config = {}
    config_path = os.path.join(path, CONFIG_FILE_NAME)
    if os.path.isfile(config_path):
        with open(config_path, encoding="utf-8") as f:
            run_config = yaml.safe_load(f) or {}
        if run_config.get("model", cfg.teacher_model) != cfg.teacher_model:
            raise UsageError(f"teacher_ckpt: the run in {path} trained {run_config['model']}, teacher_model is "
                             f"{cfg.teacher_model}")
    best = os.path.join(path, best_checkpoint_name(cfg.teacher_model))
    if not os.path.isfile(best):
        raise DataError(f"teacher_ckpt: {path} holds no {best_checkpoint_name(cfg.teacher_model)} (give a run folder "
                        "of teacher_model that validated, or a checkpoint file)")
    return best, run_config


def load_teacher(cfg, class_names):
    """The :class:`Teacher` of ``cfg``: ``teacher_model`` with every weight from ``teacher_ckpt``, trained on the
    student's classes in the student's order, checked on the image size, in inference mode and frozen.
    The architecture follows the run folder's config (``tf_same_padding``) when a folder is given, else the
    student's config."""
    path, run_config = teacher_checkpoint(cfg)
    try:
        params = read_checkpoint(path)
    except DataError as err:  # missing, empty, damaged, unreadable
        raise DataError(f"teacher_ckpt: {err}") from None
    names = class_names_of(params)
    if names is None:
        raise DataError(f"teacher_ckpt: {path} holds no class names (not written by finetune.py): the teacher must be "
                        "fine-tuned on the student's classes")
    if list(names) != list(class_names):
        raise DataError(f"teacher_ckpt: {path} was trained on other classes or another class order "
                        f"({_first_difference(names, list(class_names))}); distil from a teacher of this data")
    padding = bool(run_config.get("tf_same_padding", cfg.tf_same_padding))
    teacher_cfg = update(copy.copy(cfg), "the teacher's build", model=cfg.teacher_model, drop_rate=None,
                         drop_path_rate=None, tf_same_padding=padding)
    network = create_network(teacher_cfg, len(class_names), init_from_ckpt=False)
    try:
        report = load_weights(network, path, cfg.teacher_model, params=params, drop_head=False)
    except DataError as err:
        raise DataError(f"teacher_ckpt: {err}") from None
    missing = [p.name for p in network.get_parameters() if p.name not in params]
    if missing:
        raise DataError(f"teacher_ckpt: {path} lacks {len(missing)} of the {cfg.teacher_model} weights (e.g. "
                        f"'{missing[0]}'): the checkpoint is not a {cfg.teacher_model}")
    check_input_size(network, teacher_cfg)
    network.set_train(False)
    for param in network.get_parameters():
        param.requires_grad = False
        param.name = TEACHER_PREFIX + param.name
    print(f"teacher: {cfg.teacher_model} from {path}: {report}")
    return Teacher(network, cfg.teacher_model, path)


def _first_difference(saved, now):
    """Where the teacher's class list and the student's part: the first differing position, or the counts."""
    for index, (a, b) in enumerate(zip(saved, now)):
        if a != b:
            return f"class {index} is '{a}' there, '{b}' here"
    return f"{len(saved)} classes there, {len(now)} here"


def indexed_labels(train_data, num_classes):
    """``train_data`` whose labels carry the sample's index in the split: ``index * num_classes + label``
    (cache_teacher's look-up key; repeats of aug_repeats share their image's index)."""
    count = len(train_data.source)
    if count * num_classes >= 2 ** 31:
        raise UsageError(f"cache_teacher: {count} images x {num_classes} classes exceed the label range; "
                         "set cache_teacher: False")

    def with_index(label, index):
        return np.int32((int(index) % count) * num_classes + int(label)), index

    dataset = train_data.dataset.map(operations=with_index, input_columns=["label", "index"],
                                     output_columns=["label", "index"])
    return dataclasses.replace(train_data, dataset=dataset)


def cache_logits(cfg, teacher, class_names, num_classes):
    """The teacher's logits of every training image's (fixed) training view, in sample-index order: one pass,
    unshuffled and unsharded (a data-parallel rank's shard changes with each epoch's shuffle)."""
    begin = time.perf_counter()
    whole = update(copy.copy(cfg), "cache_teacher's pass", shuffle=False, sampler="none", aug_repeats=0,
                   num_samples=None, drop_remainder=False)
    data = indexed_labels(open_split(whole, cfg.train_split, class_names=class_names, training=True), num_classes)
    logits, keys = predict_logits(teacher.network, build_loader(whole, data, num_classes, training=True),
                                  cfg.batch_size)
    table = np.zeros((len(data.source), num_classes), np.float32)
    table[keys // num_classes] = logits
    teacher.cached_logits, teacher.cache_seconds = table, time.perf_counter() - begin
    print(f"cache_teacher: {len(keys)} training views through the teacher once in {teacher.cache_seconds:.1f}s",
          flush=True)


def prepare(cfg, train_data, num_classes, cache=True):
    """``(train_data, teacher)`` of a run: the :class:`Teacher` (None without ``teacher_model``), with its cached
    logits when ``cache_teacher`` (and ``cache``: not in a dry run), and then the training data with indexed
    labels."""
    if not cfg.teacher_model:
        return train_data, None
    teacher = load_teacher(cfg, train_data.class_names)
    if cfg.cache_teacher and cache:
        cache_logits(cfg, teacher, train_data.class_names, num_classes)
        train_data = indexed_labels(train_data, num_classes)
    return train_data, teacher


class DistillationLoss(nn.Cell):
    """``alpha * hard_loss(student, labels) + (1 - alpha) * T^2 * KL(softmax(teacher/T) || softmax(student/T))``;
    the KL term is summed over classes, then reduced over the batch as ``reduction`` says."""

    def __init__(self, hard_loss, teacher, alpha, temperature, reduction="mean"):
        super().__init__()
        self.hard_loss, self.alpha, self.temperature, self.reduction = hard_loss, alpha, temperature, reduction
        object.__setattr__(self, "teacher", teacher)  # not a sub-cell: kept out of the train step's parameters

    def construct(self, student_logits, teacher_logits, labels):
        log_student = _log_softmax(student_logits / self.temperature)
        log_teacher = _log_softmax(teacher_logits / self.temperature)
        soft = (ops.exp(log_teacher) * (log_teacher - log_student)).sum(-1) * (self.temperature ** 2)
        if self.reduction == "mean":
            soft = soft.mean()
        elif self.reduction == "sum":
            soft = soft.sum()
        return self.alpha * self.hard_loss(student_logits, labels) + (1 - self.alpha) * soft

    def loss_network(self, network):
        """The train step's loss network: the student ``network`` and the teacher on the same batch."""
        return DistilledWithLoss(network, self)


def _log_softmax(x):
    """log(softmax(x)) over the last axis, to float32 precision (MindSpore 2.7.2's CPU ``ops.log_softmax`` is off
    by up to 3e-6)."""
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - ops.log(ops.exp(shifted).sum(-1, keepdims=True))


class DistilledWithLoss(nn.Cell):
    """``(images, labels) -> loss``: the student's logits, the teacher's (computed on ``images`` without a
    gradient, or looked up by the index the labels carry with cache_teacher), then the distillation loss."""

    def __init__(self, network, loss_fn):
        super().__init__(auto_prefix=False)
        self._backbone, self._loss_fn = network, loss_fn
        teacher = loss_fn.teacher
        self.cached = teacher.cached_logits is not None
        self.num_classes = teacher.cached_logits.shape[1] if self.cached else 0
        if self.cached:
            object.__setattr__(self, "table", Parameter(Tensor(teacher.cached_logits), name=TEACHER_PREFIX
                                                        + "cached_logits", requires_grad=False))
        object.__setattr__(self, "teacher", teacher.network)

    def construct(self, images, labels):
        student = ops.cast(self._backbone(images), ms.float32)
        if self.cached:
            teacher = ops.gather(self.table, labels // self.num_classes, 0)
            labels = labels % self.num_classes
        else:
            teacher = ops.stop_gradient(ops.cast(self.teacher(images), ms.float32))
        return self._loss_fn(student, teacher, labels)


def distilled_loss(cfg, hard_loss, teacher):
    """The run's loss: ``hard_loss`` inside a :class:`DistillationLoss` when there is a teacher."""
    if teacher is None:
        return hard_loss
    return DistillationLoss(hard_loss, teacher, cfg.distill_alpha, cfg.distill_temperature, cfg.reduction)
