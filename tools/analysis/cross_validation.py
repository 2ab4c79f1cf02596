"""K-fold cross-validation of a training split (``tools/cross_validate.py``): one small val split is a noisy
judge, and a model's view of its own training images hides the labels it memorised.

The training split's images are dealt into K stratified folds (each class on its own, in the seeded order of
:func:`tools.datasets.splitting.seeded_order`, so every fold holds about 1/K of each class). Fold k is an
ordinary run of ``finetune.py``'s ``main`` in ``<out>/fold_k`` on two list files, ``<out>/folds/fold_k/train.csv``
(the other folds) and ``val.csv`` (fold k), with absolute image paths and the split's ``classes.txt``. An
interrupted CV continues: a finished fold (its ``summary.json``) is not trained again, an unfinished one goes
on through the suite's ``resume: auto``. Each fold's best checkpoint then predicts its own val fold: these
out-of-fold (OOF) probabilities give every training image a prediction from a model that never saw it
(``oof_predictions.csv``), the per-fold metrics and their mean and standard deviation (``cv_summary.json/.md``).
"""
import gc
import json
import os
import sys

from tools.core.config import parse_config
from tools.core.errors import DataError, UsageError
from tools.core.fileio import atomic_write_text
from tools.datasets.class_names import CLASSES_FILE
from tools.datasets.splitting import seeded_order, write_lists
from tools.evaluate import metrics
from tools.report import evaluation as reports
from tools.train import run_folder
from tools.train.checkpoints import write_json
from tools.train.run_files import CONFIG_FILE_NAME, SUMMARY_FILE

import numpy as np

PLAN_FILE = "cv_plan.json"  # what the folds are: written first, so a resumed CV is checked to be the same one
SUMMARY_JSON, SUMMARY_MD, OOF_FILE = "cv_summary.json", "cv_summary.md", "oof_predictions.csv"
LISTS_DIR = "folds"
METRICS = ("top1", "macro_f1", "mean_per_class_acc", "loss")
PROB_PREFIX = "prob:"  # oof_predictions.csv's column of a class: prob:<class name>
# flags a fold's run gets from the CV alone: its folder (--out), its resume, its val part (the fold)
CV_ONLY_KEYS = ("ckpt_save_dir", "resume", "overwrite", "val_fraction")


def fold_dir(out, fold):
    """The run folder of ``fold`` (1-based)."""
    return os.path.join(out, f"fold_{fold}")


def lists_dir(out, fold):
    """The list files (train.csv, val.csv, classes.txt) of ``fold``: the fold run's data_dir."""
    return os.path.join(out, LISTS_DIR, f"fold_{fold}")


def check_fold_count(folds, labels, class_names):
    """Refuse (UsageError) fewer than 2 folds, or more folds than the smallest class has images (a fold would
    miss that class in its val part)."""
    if folds < 2:
        raise UsageError(f"--folds must be >= 2, got {folds}")
    counts = np.bincount(labels, minlength=len(class_names))
    present = np.flatnonzero(counts)
    smallest = present[np.argmin(counts[present])]
    if folds > counts[smallest]:
        raise UsageError(f"--folds {folds} is more than the {counts[smallest]} images of class "
                         f"'{class_names[smallest]}': every fold needs an image of every class; use --folds "
                         f"{max(counts[smallest], 2)} or fewer")


def assign_folds(paths, labels, class_names, folds, seed):
    """Fold (1 .. ``folds``) of every image: each class dealt round-robin in its seeded order, starting one
    fold further for each class so that the folds' sizes differ by at most one image per class."""
    assignment = {}
    for index, name in enumerate(class_names):
        for position, path in enumerate(seeded_order([p for p, k in zip(paths, labels) if k == index], name, seed)):
            assignment[path] = (position + index) % folds + 1
    return np.array([assignment[p] for p in paths])


def plan(cfg, paths, labels, class_names, folds, seed):
    """What the CV is (its folds, images and classes): stored in ``PLAN_FILE``; a resumed CV must match it."""
    return {"folds": folds, "seed": seed, "data_dir": os.path.abspath(cfg.data_dir), "train_split": cfg.train_split,
            "class_names": list(class_names), "images": list(paths), "labels": [int(k) for k in labels],
            "fold_of": [int(f) for f in assign_folds(paths, labels, class_names, folds, seed)]}


def check_out(out, wanted):
    """Refuse (UsageError) an ``--out`` that holds something other than this cross-validation (reading only):
    another tool's files, a CV with other folds, images or classes, or a fold run in use or not ours."""
    if not os.path.isdir(out) or not os.listdir(out):
        return
    path = os.path.join(out, PLAN_FILE)
    if not os.path.isfile(path):
        raise UsageError(f"--out {out} holds files but no cross-validation ({PLAN_FILE}); name a new or empty folder")
    try:
        with open(path, encoding="utf-8") as f:
            found = json.load(f)
    except (OSError, ValueError) as err:
        raise DataError(f"{path} is unreadable ({err.__class__.__name__}); name a new --out") from None
    for key in ("folds", "seed", "class_names", "images", "fold_of"):
        if found.get(key) != wanted[key]:
            raise UsageError(f"--out {out} holds a cross-validation with other {key.replace('_', ' ')} (its "
                             f"{PLAN_FILE}); the same command continues it, another one needs a new --out")
    for fold in range(1, wanted["folds"] + 1):
        state = run_folder.status(fold_dir(out, fold))
        if state in ("running", "other"):
            what = "is in use by a running run" if state == "running" else "holds files of no run of this suite"
            raise UsageError(f"{fold_dir(out, fold)} {what}; name a new --out")


def write_folds(out, wanted):
    """``PLAN_FILE`` and each fold's list files; a list that would change is refused (``write_lists``)."""
    os.makedirs(out, exist_ok=True)
    atomic_write_text(os.path.join(out, PLAN_FILE), json.dumps(wanted, indent=1, ensure_ascii=False) + "\n")
    names, rows = wanted["class_names"], list(zip(wanted["images"], wanted["labels"], wanted["fold_of"]))
    for fold in range(1, wanted["folds"] + 1):
        folder = lists_dir(out, fold)
        write_lists(folder, {"train": [(p, names[k]) for p, k, f in rows if f != fold],
                             "val": [(p, names[k]) for p, k, f in rows if f == fold]})
        atomic_write_text(os.path.join(folder, CLASSES_FILE), "".join(f"{name}\n" for name in names))


def fold_argv(argv, out, fold):
    """The command line of fold ``fold``'s run: the CV's config and flags, then its own data and folder."""
    own = {"data_dir": lists_dir(out, fold), "dataset_format": "list", "list_dir": "", "train_split": "train",
           "val_split": "val", "val_fraction": 0, "image_column": "image", "label_column": "label",
           "ckpt_save_dir": fold_dir(out, fold), "resume": "auto"}
    return [*argv, *(item for key, value in own.items() for item in (f"--{key}", str(value)))]


def check_flags(cfg_argv):
    """Refuse (UsageError) a flag of ``CV_ONLY_KEYS``: the CV sets it for each fold."""
    for item in cfg_argv:
        key = item[2:].split("=", 1)[0] if item.startswith("--") else None
        if key in CV_ONLY_KEYS:
            raise UsageError(f"--{key} is set by cross_validate.py for each fold (--out names the folder, the same "
                             "command resumes, the folds are the held-out parts); leave it out")


def train_fold(argv, out, fold, total):
    """Train fold ``fold`` through ``finetune.py``'s main unless it finished; returns whether it trained."""
    folder = fold_dir(out, fold)
    if run_folder.finished(folder):
        print(f"fold {fold}/{total}: finished earlier, not trained again ({folder})", flush=True)
        return False
    import finetune  # the repository's own training entry: same checks, resume and outputs as any run

    print(f"fold {fold}/{total}: training in {folder}", flush=True)
    command, sys.argv = sys.argv, [finetune.__file__, *fold_argv(argv, out, fold)]  # a stop names the fold's command
    try:
        code = finetune.main(sys.argv[1:])
    finally:
        sys.argv = command
        gc.collect()
    if code or not run_folder.finished(folder):
        raise DataError(f"fold {fold}'s run in {folder} did not finish; run the same command again to continue it")
    return True


def best_checkpoint(folder):
    """The best checkpoint of a finished fold run (its last one when it never validated)."""
    with open(os.path.join(folder, SUMMARY_FILE), encoding="utf-8") as f:
        summary = json.load(f)
    path = summary.get("best_checkpoint") or summary["last_checkpoint"]
    return path if os.path.isabs(path) else os.path.join(folder, os.path.basename(path))


def predict_fold(out, fold):
    """``(paths, labels, logits)`` of fold ``fold``'s val images, from its best checkpoint, with the fold run's
    own config (its evaluation transforms), in list order."""
    from tools.core import runtime  # MindSpore loads only here
    from tools.datasets.loader import build_loader, open_split
    from tools.evaluate.inference import predict_logits
    from tools.models.factory import checkpoint_network, class_names_of, read_checkpoint

    folder = fold_dir(out, fold)
    ckpt = best_checkpoint(folder)
    cfg = parse_config(["--config", os.path.join(folder, CONFIG_FILE_NAME), "--ckpt_path", ckpt,
                        "--eval_shuffle", "False"], "cross-validation fold")
    runtime.setup(cfg)
    params = read_checkpoint(ckpt)
    data = open_split(cfg, "val", class_names=class_names_of(params))
    network = checkpoint_network(cfg, params, data.class_names)
    loader = build_loader(cfg, data, len(data.class_names), training=False)
    logits, labels = predict_logits(network, loader, cfg.batch_size)
    del network, loader, params
    gc.collect()
    return [os.path.abspath(p) for p in data.paths], labels, logits, ckpt


def fold_metrics(probs, labels):
    """Top-1, macro F1, mean per-class accuracy and loss (mean NLL) of probabilities ``probs`` (N, C)."""
    log_probs = np.log(np.maximum(probs, np.finfo(np.float64).tiny))
    matrix = metrics.confusion_matrix(labels, probs.argmax(axis=1), probs.shape[1])
    return {"top1": metrics.topk_accuracy(probs, labels, 1), "macro_f1": metrics.f1_averages(matrix)[0],
            "mean_per_class_acc": metrics.mean_per_class_accuracy(labels, probs.argmax(axis=1), probs.shape[1]),
            "loss": float(-log_probs[np.arange(len(labels)), labels].mean())}


def out_of_fold(out, wanted):
    """Every training image's probabilities from the fold that held it out: ``(probs (N, C) in plan order,
    per-fold rows)``; an image a fold did not predict (or one it predicted that the plan lacks) is an error."""
    index = {path: i for i, path in enumerate(wanted["images"])}
    probs = np.full((len(index), len(wanted["class_names"])), np.nan)
    rows = []
    for fold in range(1, wanted["folds"] + 1):
        paths, labels, logits, ckpt = predict_fold(out, fold)
        fold_probs = metrics.softmax(logits.astype(np.float64))
        for path, row in zip(paths, fold_probs):
            if path not in index:
                raise DataError(f"fold {fold} predicted {path}, which is not in {PLAN_FILE}")
            probs[index[path]] = row
        rows.append({"fold": fold, "run": fold_dir(out, fold), "checkpoint": ckpt, "num_images": len(paths),
                     **fold_metrics(fold_probs, labels)})
    missing = np.flatnonzero(np.isnan(probs[:, 0]))
    if len(missing):
        raise DataError(f"{len(missing)} training images got no out-of-fold prediction (e.g. "
                        f"{wanted['images'][missing[0]]}): an image was skipped as unreadable in a fold")
    return probs, rows


def summary(wanted, probs, rows):
    """``cv_summary.json``'s content: per fold, mean and std (over the folds, numpy's default ddof 0) of
    ``METRICS``, and the same metrics of all OOF predictions pooled."""
    labels = np.array(wanted["labels"])
    return {"folds": wanted["folds"], "seed": wanted["seed"], "data_dir": wanted["data_dir"],
            "train_split": wanted["train_split"], "num_images": len(labels), "class_names": wanted["class_names"],
            "per_fold": rows,
            "mean": {key: float(np.mean([row[key] for row in rows])) for key in METRICS},
            "std": {key: float(np.std([row[key] for row in rows])) for key in METRICS},
            "pooled_oof": fold_metrics(probs, labels), "oof_predictions": OOF_FILE}


def write_outputs(out, wanted, probs, result):
    """``oof_predictions.csv`` (image, label, fold, one ``prob:<class>`` column per class) and ``cv_summary``."""
    names = wanted["class_names"]
    reports.write_csv(os.path.join(out, OOF_FILE), ["image", "label", "fold", *(PROB_PREFIX + n for n in names)],
                      [[path, names[k], f, *map(float, row)]
                       for path, k, f, row in zip(wanted["images"], wanted["labels"], wanted["fold_of"], probs)])
    write_json(os.path.join(out, SUMMARY_JSON), result)
    atomic_write_text(os.path.join(out, SUMMARY_MD), summary_markdown(result))


def summary_markdown(result):
    header = "| fold | images | Top-1 | macro F1 | mean per-class acc | loss |\n|---|---|---|---|---|---|\n"
    line = "| {} | {} | {top1:.4f} | {macro_f1:.4f} | {mean_per_class_acc:.4f} | {loss:.4f} |\n"
    body = "".join(line.format(row["fold"], row["num_images"], **row) for row in result["per_fold"])
    mean, std = result["mean"], result["std"]
    spread = " | ".join(f"{mean[k]:.4f} +- {std[k]:.4f}" for k in METRICS)
    pooled = line.format("all (pooled OOF)", result["num_images"], **result["pooled_oof"])
    return (f"# Cross-validation: {result['folds']} folds of {result['train_split']} ({result['num_images']} images, "
            f"{len(result['class_names'])} classes, seed {result['seed']})\n\n{header}{body}"
            f"| mean +- std | | {spread} |\n{pooled}")


def mean_line(result):
    """One line of the mean +- std of every metric."""
    return "; ".join(f"{key} {result['mean'][key]:.4f} +- {result['std'][key]:.4f}" for key in METRICS)
