"""Fine-tune a MindCV model on a custom dataset (split folders or Aircraft-style annotation files).

    python finetune.py --config configs/demo.yaml [--key value ...]
"""
import os
import tempfile

from tools.core import stop_signals

if __name__ == "__main__":  # before MindSpore starts threads: Ctrl-C and SIGTERM stop between steps
    stop_signals.route_to_main_thread()

from tools.core import runtime
from tools.core.config import BOOL, no_effect_notes, parse_config, save_config, update
from tools.core.errors import run_cli
from tools.core.fileio import check_outside_data, check_writable_dir, data_folders, file_sha256
from tools.datasets.splitting import hold_out_val, keep_held_out
from tools.train import run_folder
from tools.train.run_files import CONFIG_FILE_NAME
from tools.train.trainer import Trainer, weights_digest
from tools.train.wiring import build_training, describe

EXTRA = {"finetune.py": [
    ("dry_run", False, BOOL, "resolve the config, check the data, build model, loss, schedule, optimizer and "
                             "train step, print the plan and exit without training"),
]}


def dry_run(cfg, shard, rank):
    """``--dry_run``: everything but training, in a scratch folder that is then removed (a ``val_fraction``
    split lands there), after checking that ``ckpt_save_dir`` could be written."""
    check_writable_dir(cfg.ckpt_save_dir, "ckpt_save_dir")
    with tempfile.TemporaryDirectory() as scratch:
        update(cfg, "--dry_run (a scratch folder)", ckpt_save_dir=scratch)
        hold_out_val(cfg, scratch)
        run = build_training(cfg, shard, verbose=rank == 0, extract_features=False)
        if rank == 0:
            print(describe(cfg, run))
            print("dry run: nothing trained or written")
    return 0


def _resuming_at(epoch, step):
    if step:
        return f", resuming at epoch {epoch} step {step + 1}"
    return f", resuming at epoch {epoch}" if epoch > 1 else ""


def main(argv=None):
    cfg = parse_config(argv, "Fine-tune a MindCV model on a custom dataset.", extra=EXTRA)
    check_outside_data(cfg.ckpt_save_dir, "ckpt_save_dir", data_folders(cfg, [cfg.train_split, cfg.val_split]))
    shard = runtime.setup(cfg)
    rank = shard[1] or 0
    if rank == 0:
        for note in no_effect_notes(cfg):
            print(f"note: {note}")
    if cfg.dry_run:
        return dry_run(cfg, shard, rank)
    # every check (the resume state against this config, the data, the model) before the first write:
    # a refused command leaves an earlier run byte for byte as it was
    with tempfile.TemporaryDirectory() as scratch:
        chosen = run_folder.choose(cfg, rank)  # reads only; sets cfg.ckpt_save_dir (and resume) to a resumed run's
        held_out = hold_out_val(cfg, scratch)  # --val_fraction: its lists, in scratch until the folder is taken
        run = build_training(cfg, shard, verbose=rank == 0)
        trainer = Trainer(cfg, run.network, run.train_step, run.lrs, run.class_names, rank, run.callbacks,
                          world=shard[0] or 1)
        start_epoch = trainer.resume(cfg.resume) if cfg.resume else 1
    if start_epoch > cfg.epoch_size and run_folder.finished(cfg.ckpt_save_dir):
        if rank == 0:
            print(f"{cfg.ckpt_save_dir}: the run finished its {start_epoch - 1} epochs (epoch_size {cfg.epoch_size}): "
                  "nothing to do (a larger epoch_size extends it)")
        return 0
    stop_signals.between_steps()  # from the first write on, a stop signal keeps what is on disk whole
    trainer.saver.folder = run_folder.take(cfg, rank, chosen)  # held till exit: a new run may land in <dir>_N
    keep_held_out(cfg, held_out)  # the split goes into the run folder and its config.yaml

    if rank == 0:
        os.makedirs(cfg.ckpt_save_dir, exist_ok=True)
        save_config(cfg, os.path.join(cfg.ckpt_save_dir, CONFIG_FILE_NAME))
        trainer.summary_facts.update(trainable_params=run.frozen.trainable_params,
                                     frozen_params=run.frozen.frozen_params,
                                     config_sha256=file_sha256(os.path.join(cfg.ckpt_save_dir, CONFIG_FILE_NAME)))
        if run.teacher:
            trainer.summary_facts.update(run.teacher.facts(cfg))
        print(run.frozen.summary())
        print(f"{cfg.model}: {run.num_classes} classes, {run.train_data.size} train images ({run.train_data.layout}), "
              f"{run.val_data.size if run.val_data else 0} val images, {run.steps} steps/epoch, {cfg.epoch_size} "
              f"epochs{_resuming_at(start_epoch, trainer.resume_step[0])}; outputs in {cfg.ckpt_save_dir}", flush=True)
    trainer.fit(run.train_loader, run.val_loader, start_epoch, run_folder.resume_command(cfg.ckpt_save_dir))
    if shard[0]:
        print(f"rank {rank}: final weights digest {weights_digest(run.network)}", flush=True)
    if rank == 0 and trainer.best_top1 is not None:
        print(f"best val top1 {trainer.best_top1:.4f}; checkpoints: {trainer.saver.best_path}, "
              f"{trainer.saver.last_path}")
    return 0


if __name__ == "__main__":
    run_cli(main)
