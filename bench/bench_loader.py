"""Input pipeline alone vs training: images/s through the suite's training loader and through its train step.

    .venv/bin/python bench/bench_loader.py [--settings demo aircraft] [--workers 1 2] [--repeats 3]

In one process: the suite's ``open_split`` + ``build_loader(training=True)`` (annotation reader ->
MindCV's create_transforms/create_loader with the config's augmentation), iterated exactly as
``Trainer.train_epoch`` does (``tools.train.trainer.batches``) but without training, for each
``num_parallel_workers``; and the suite's train step (``build_train_step``) on an in-memory batch of the
same shape, i.e. the rate at which training consumes images. Target: loader >= 2x training.

Settings as in bench_train.py: ``demo`` (configs/demo.yaml, 96 px, 28 px source JPEGs) and ``aircraft``
(Aircraft config: 600 px, randaug-m7-mstd0.5, from synthetic 500x375 JPEGs).
"""
import sys
import time

import common


def loader_epoch(loader, batch_size):
    from tools.evaluate.inference import batches

    begin, images = time.perf_counter(), 0
    for batch in batches(loader):
        images += len(batch[0])
    return time.perf_counter() - begin, images


def run_setting(name, config, data_dir, overrides, workers, repeats, train_steps):
    from tools.core import runtime
    from tools.datasets.loader import build_loader, open_split

    import mindspore as ms

    cfg = common.suite_config(config, data_dir=data_dir, **overrides)
    common.quiet(runtime.setup, cfg)
    res = {"model": cfg.model, "image_resize": cfg.image_resize, "batch_size": cfg.batch_size,
           "auto_augment": cfg.auto_augment, "loader": {}, "repeats": repeats}
    loaders = {}
    for w in workers:
        cfg_w = common.suite_config(config, data_dir=data_dir, num_parallel_workers=w, **overrides)
        data = open_split(cfg_w, cfg_w.train_split, training=True)
        loaders[w] = build_loader(cfg_w, data, len(data.class_names), training=True)
        res["train_images"] = data.size
        loader_epoch(loaders[w], cfg.batch_size)  # warm-up (thread pools, file cache)
        res["loader"][w] = {"images_per_s": []}
    # training consumption rate: the suite's train step, compute only
    run = common.SuiteRun(cfg)
    batch = common.fake_batch(cfg, run.num_classes)
    res["train_compile_seconds"] = common.time_steps(run.train_step, batch, 1)
    common.time_steps(run.train_step, batch, 1)
    res["train_images_per_s"] = []
    for r in range(repeats):
        for w, loader in loaders.items():
            seconds, images = loader_epoch(loader, cfg.batch_size)
            res["loader"][w]["images_per_s"].append(images / seconds)
        seconds = common.time_steps(run.train_step, batch, train_steps)
        res["train_images_per_s"].append(train_steps * cfg.batch_size / seconds)
        print(f"  [{name}] repeat {r + 1}/{repeats}: " + ", ".join(
            f"loader w{w} {res['loader'][w]['images_per_s'][-1]:.0f}" for w in loaders)
            + f", train {res['train_images_per_s'][-1]:.1f} images/s", flush=True)
    train = common.median(res["train_images_per_s"])
    res["median_train_images_per_s"] = train
    for w, r in res["loader"].items():
        r["median_images_per_s"] = common.median(r["images_per_s"])
        r["vs_train"] = r["median_images_per_s"] / train
    ms.dataset.config.set_seed(0)
    return res


def main():
    parser = common.settings_parser(__doc__.split("\n")[0], aircraft_images=64)
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--train_steps", type=int, default=3, help="timed train steps per repeat")
    args = parser.parse_args()

    def run(name, spec, tmp):
        print(f"[{name}] ...", flush=True)
        steps = max(args.train_steps, 5) if name == "demo" else args.train_steps
        return run_setting(name, *spec, args.workers, args.repeats, steps)

    out = common.run_settings(args, "bench_loader_", run)
    rows = []
    for name, r in out["settings"].items():
        for w, lr in r["loader"].items():
            rows.append([name, f"{r['image_resize']}px, aug {r['auto_augment']}", w, lr["median_images_per_s"],
                         r["median_train_images_per_s"], f"{lr['vs_train']:.1f}x"])
    return common.finish("loader", out, ["setting", "transforms", "workers", "loader images/s", "train images/s",
                                         "loader / train"], rows, "target: loader >= 2x training")


if __name__ == "__main__":
    sys.exit(main())
