"""Time to accuracy: MindCV's own pipeline doing full fine-tuning vs the suite's quickest recipes, as wall
time to reach MindCV's final Top-1.

    .venv/bin/python bench/bench_time_to_accuracy.py [--data_dir runs/fmnist_compare_data] \
        [--ckpt_path checkpoints/mobilenet_v2_100_keras_imagenet.ckpt] [--epochs 5] [--recipes ...] \
        [--mindcv_repeats 3]

The compare set (``make compare`` makes the data and the converted MobileNetV2; configs/mobilenetv2/
fmnist_compare.yaml). ``mindcv``: MindCV 0.3.0's public API as a MindCV user writes it (create_dataset on
the ImageNet-style tree made by tools/split_aircraft.py, create_transforms, create_loader, create_model with
the converted weights loaded except the classifier, create_loss/scheduler/optimizer, create_trainer ->
Model.train one epoch at a time, Model.eval for Top-1, in GRAPH mode as MindCV's train.py sets it), each run
a new process timed from its start; its wall time counts one evaluation (the final one), and is also
reported counting every epoch's evaluation, as the suite's recipes validate every epoch
(``val_while_train``). MindCV's runs are unseeded, so their final Top-1 varies: the target is the median of
``--mindcv_repeats`` runs' final Top-1, compared with the median of their wall times. The suite's
recipes are finetune.py runs with the same config and
``epoch_size`` (wall time of the process; an epoch's Top-1 is reached at the process's end minus the
``seconds`` of the later epochs in results.csv):

* ``full``: full fine-tuning (the suite's loop on the same recipe);
* ``cache_features``: the head alone on cached backbone features (freeze_backbone, freeze_bn_stats);
* ``freeze_epochs``: the head alone for ``--freeze_epochs`` epochs, then full;
* ``freeze_epochs_cached``: the same with the head epochs on cached features (``cache_features``);
* ``full_64px``: full fine-tuning at 64 px instead of the config's 96 (training and validation; the
  compare set's images are 28x28 Fashion-MNIST, so 64 px loses no detail and a step costs about half).

Prints, per recipe, the Top-1 per epoch, the wall time to MindCV's final Top-1 (or "not reached" and its
best) and the ratio to MindCV's wall time, with the load average.
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time

import common

COMPARE_CONFIG = os.path.join(common.ROOT, "configs", "mobilenetv2", "fmnist_compare.yaml")
RECIPES = {
    "full": [],
    "cache_features": ["--freeze_backbone", "True", "--freeze_bn_stats", "True", "--cache_features", "True"],
    "freeze_epochs": ["--freeze_epochs", "{freeze_epochs}"],
    "freeze_epochs_cached": ["--freeze_epochs", "{freeze_epochs}", "--cache_features", "True"],
    "full_64px": ["--image_resize", "64"],
}


def mindcv_run(cfg, tree, num_classes, ckpt_path, begin):
    """MindCV's full fine-tuning in this process (begun at ``begin``, a ``time.time()``); returns [(wall
    seconds to the end of epoch i incl. one eval, top1, the same incl. every epoch's eval)]."""
    import mindspore as ms
    from bench_train import MindCVPipeline
    from mindcv.data import create_dataset, create_loader, create_transforms

    ms.set_context(mode=cfg.mode)  # as MindCV's train.py does (its default, GRAPH); MindSpore's own default is PyNative
    pipeline = MindCVPipeline(cfg, tree, num_classes, sink=False)
    params = {k: v for k, v in ms.load_checkpoint(ckpt_path).items() if not k.startswith("classifier")}
    not_loaded, _ = ms.load_param_into_net(pipeline.network, params)
    not_loaded = [n for n in not_loaded if not n.startswith("classifier")]
    if not_loaded:
        raise SystemExit(f"{ckpt_path}: {len(not_loaded)} of MindCV's parameters not in it (e.g. {not_loaded[0]})")
    val = create_dataset(name="", root=tree, split=cfg.val_split, shuffle=False,
                         num_parallel_workers=cfg.num_parallel_workers)
    val_tf = create_transforms(dataset_name="", image_resize=cfg.image_resize, is_training=False,
                               crop_pct=cfg.crop_pct, interpolation=cfg.interpolation, mean=cfg.mean, std=cfg.std)
    val_loader = create_loader(dataset=val, batch_size=cfg.batch_size, drop_remainder=False, is_training=False,
                               num_classes=num_classes, transform=val_tf, num_parallel_workers=cfg.num_parallel_workers)
    rows, eval_seconds = [], 0.0
    for _ in range(cfg.epoch_size):
        pipeline.model.train(1, pipeline.loader, dataset_sink_mode=False)
        train_end = time.time()
        top1 = pipeline.model.eval(val_loader, dataset_sink_mode=False)["acc"]
        now = time.time()
        rows.append((train_end - begin - eval_seconds + (now - train_end), top1, now - begin))
        eval_seconds += now - train_end
        print(f"  mindcv epoch {len(rows)}: top1 {top1:.4f} at {rows[-1][0]:.1f}s ({rows[-1][2]:.1f}s with every "
              f"epoch's evaluation)  load {os.getloadavg()[0]:.2f}", flush=True)
    return rows


def mindcv_runs(cfg_args, tree, num_classes, repeats, tmp):
    """``repeats`` MindCV runs, each a new process as a user starts it; their rows."""
    runs = []
    for r in range(repeats):
        out = os.path.join(tmp, f"mindcv_{r}.json")
        begin = time.time()
        subprocess.run([sys.executable, os.path.abspath(__file__), "--mindcv_child", tree, str(num_classes), out,
                        str(begin), *cfg_args], cwd=common.ROOT, env=dict(os.environ, GLOG_v="3"), check=True)
        with open(out, encoding="utf-8") as f:
            runs.append([tuple(row) for row in json.load(f)])
    return runs


def mindcv_child(tree, num_classes, out, begin, argv):
    args = parse_args(argv)
    cfg = common.suite_config(COMPARE_CONFIG, data_dir=args.data_dir, epoch_size=args.epochs, tf_same_padding=False)
    rows = mindcv_run(cfg, tree, int(num_classes), args.ckpt_path, float(begin))
    with open(out, "w", encoding="utf-8") as f:
        json.dump(rows, f)


def suite_run(name, flags, args, out):
    """One finetune.py run; returns [(wall seconds to the end of epoch i's validation, top1)]."""
    cmd = [sys.executable, os.path.join(common.ROOT, "finetune.py"), "--config", COMPARE_CONFIG,
           "--data_dir", args.data_dir, "--ckpt_path", args.ckpt_path, "--epoch_size", str(args.epochs),
           "--ckpt_save_dir", out, *[f.format(freeze_epochs=args.freeze_epochs) for f in flags]]
    begin = time.perf_counter()
    subprocess.run(cmd, cwd=common.ROOT, env=dict(os.environ, GLOG_v="3"), check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - begin
    with open(os.path.join(out, "results.csv"), encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    seconds = [float(r["seconds"]) for r in table]
    rows = [(wall - sum(seconds[i + 1:]), float(r["top1"])) for i, r in enumerate(table)]
    for i, (at, top1) in enumerate(rows, 1):
        print(f"  {name} epoch {i}: top1 {top1:.4f} at {at:.1f}s  load {os.getloadavg()[0]:.2f}", flush=True)
    return rows


def reached(rows, target):
    return next((at for at, top1 in rows if top1 >= target - 1e-9), None)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=os.path.join(common.ROOT, "runs", "fmnist_compare_data"))
    parser.add_argument("--ckpt_path", default=os.path.join(common.ROOT, "checkpoints",
                                                            "mobilenet_v2_100_keras_imagenet.ckpt"))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--freeze_epochs", type=int, default=1)
    parser.add_argument("--recipes", nargs="+", default=["full", "cache_features", "freeze_epochs"],
                        choices=list(RECIPES))
    parser.add_argument("--mindcv_repeats", type=int, default=3,
                        help="MindCV runs (unseeded: its Top-1 varies); the target is their median final Top-1")
    return parser.parse_args(argv)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--mindcv_child"]:
        return mindcv_child(*argv[1:5], argv[5:])
    args = parse_args(argv)
    for path in (args.data_dir, args.ckpt_path):
        if not os.path.exists(path):
            raise SystemExit(f"not found: {path} (make compare makes the data and the converted weights)")
    header = common.report_header()
    cfg = common.suite_config(COMPARE_CONFIG, data_dir=args.data_dir, epoch_size=args.epochs, tf_same_padding=False)
    with tempfile.TemporaryDirectory() as tmp:
        tree = common.folder_tree(args.data_dir, os.path.join(tmp, "tree"))
        num_classes = len(os.listdir(os.path.join(tree, cfg.train_split)))
        cfg_args = ["--data_dir", args.data_dir, "--ckpt_path", args.ckpt_path, "--epochs", str(args.epochs)]
        mindcv = mindcv_runs(cfg_args, tree, num_classes, args.mindcv_repeats, tmp)
        results = {}
        for name in args.recipes:
            results[name] = suite_run(name, RECIPES[name], args, os.path.join(tmp, name))
    finals = [rows[-1] for rows in mindcv]
    mindcv_wall = common.median([row[0] for row in finals])
    mindcv_wall_every_eval = common.median([row[2] for row in finals])
    target = common.median([row[1] for row in finals])
    print(f"MindCV full fine-tuning, {len(finals)} runs: final top1 " + ", ".join(f"{row[1]:.4f}" for row in finals)
          + " in " + ", ".join(f"{row[0]:.1f}s" for row in finals) + f"; target (median) {target:.4f}, "
          f"wall time (median) {mindcv_wall:.1f}s, {mindcv_wall_every_eval:.1f}s when it validates every epoch "
          "as the suite's recipes do")
    summary = {}
    for name in args.recipes:
        at = reached(results[name], target)
        best = max(top1 for _, top1 in results[name])
        summary[name] = {"seconds_to_target": at, "ratio": at / mindcv_wall if at else None,
                         "ratio_every_eval": at / mindcv_wall_every_eval if at else None, "best_top1": best}
        print(f"  {name}: " + (f"reached {target:.4f} at {at:.1f}s = {at / mindcv_wall:.2f}x MindCV's wall time "
                               f"({at / mindcv_wall_every_eval:.2f}x validating every epoch)"
                               if at else f"did not reach {target:.4f} (best {best:.4f})"))
    print(f"load average at end {[round(x, 2) for x in os.getloadavg()]}")
    common.write_json("bench_time_to_accuracy", {**header, "args": vars(args), "target": target,
                                                 "mindcv_wall": mindcv_wall,
                                                 "mindcv_wall_every_eval": mindcv_wall_every_eval, "mindcv": mindcv,
                                                 "results": results, "summary": summary})


if __name__ == "__main__":
    main()
