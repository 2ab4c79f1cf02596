"""The cost of seeded augmentation: the suite's training loader (each sample's transforms seeded from
(seed, epoch, index), tools/datasets/seeded_augment.py) against MindCV's plain mapping of the same transforms
(unseeded: what the suite did before), side by side in one process.

    .venv/bin/python bench/bench_seeded_augment.py [--repeats 3] [--images 48] [--workers 2]

Aircraft setting (configs/mobilenetv3/mobilenet_v3_small_aircraft.yaml: 600 px, randaug-m7-mstd0.5,
hflip, random crops; synthetic 500x375 JPEGs). For each variant, interleaved in every repeat: the loader
alone (images/s through ``tools.train.trainer.batches``) and one training epoch (``Trainer.train_epoch``:
loader feeding the train step, what a user waits for). Reported: medians and seeded/unseeded ratios.
"""
import argparse
import os
import sys
import tempfile

import common


def unseeded_loader(cfg, num_classes):
    """MindCV's create_loader mapping the transforms over the image column (no per-sample seeds)."""
    from tools.datasets.loader import build_transforms, open_split

    from mindcv.data import create_loader

    data = open_split(cfg, cfg.train_split, training=True)
    return create_loader(dataset=data.dataset.project(["image", "label"]), batch_size=cfg.batch_size,
                         drop_remainder=cfg.drop_remainder, is_training=True, num_classes=num_classes,
                         transform=build_transforms(cfg, True), num_parallel_workers=cfg.num_parallel_workers)


def loader_rate(loader):
    import time

    from tools.evaluate.inference import batches

    begin, images = time.perf_counter(), 0
    for batch in batches(loader):
        images += len(batch[0])
    return images / (time.perf_counter() - begin)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=48, help="training images (synthetic Aircraft layout)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--image_resize", type=int, default=600)
    parser.add_argument("--loader_only", action="store_true", help="time the loaders only (quick, more repeats)")
    args = parser.parse_args()
    header = common.report_header()
    out = dict(header)
    from tools.core import runtime

    with tempfile.TemporaryDirectory(prefix="bench_seeded_") as tmp:
        data_dir = common.make_aircraft(os.path.join(tmp, "aircraft"), trainval=args.images, test=8,
                                        distinct=args.images)
        cfg = common.suite_config(common.AIRCRAFT_CONFIG, data_dir=data_dir, pretrained=False, log_interval=100000,
                                  num_parallel_workers=args.workers, image_resize=args.image_resize)
        common.quiet(runtime.setup, cfg)
        run = common.SuiteRun(cfg)                       # seeded: the suite's own loader
        loaders = {"seeded": run.loader, "unseeded": unseeded_loader(cfg, run.num_classes)}
        rates = {name: {"loader": [], "train": []} for name in loaders}
        if not args.loader_only:
            run.trainer.train_epoch(loaders["seeded"], 1, run.steps)   # compile
        for loader in loaders.values():                             # warm up both pipelines (thread pools, files)
            loader_rate(loader)
        for r in range(args.repeats):
            for name, loader in loaders.items():
                rates[name]["loader"].append(loader_rate(loader))
                if not args.loader_only:
                    run.loader = loader
                    seconds, images = run.epoch(epoch=2 + r)
                    rates[name]["train"].append(images / seconds)
            print(f"  repeat {r + 1}/{args.repeats}: " + ", ".join(
                f"{n} loader {v['loader'][-1]:.1f} train {(v['train'] or [0])[-1]:.2f} images/s"
                for n, v in rates.items()),
                flush=True)
    out["rates_images_per_s"] = rates
    medians = {n: {k: common.median(v) for k, v in kinds.items()} for n, kinds in rates.items()}
    out["medians"] = medians
    kinds = ("loader",) if args.loader_only else ("loader", "train")
    out["ratio_seeded_over_unseeded"] = ratio = {k: medians["seeded"][k] / medians["unseeded"][k] for k in kinds}
    rows = [[n] + [f"{m[k]:.2f} ({common.spread(rates[n][k])[0]:.2f}-{common.spread(rates[n][k])[1]:.2f})"
                   for k in kinds] for n, m in medians.items()]
    print()
    common.print_table(["loader", *(f"{k} images/s median (range)" for k in kinds)], rows)
    print("seeded / unseeded: " + ", ".join(f"{k} {ratio[k]:.3f}" for k in kinds) + " (target: training > 0.95)")
    common.write_json("seeded_augment_loader" if args.loader_only else "seeded_augment", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
