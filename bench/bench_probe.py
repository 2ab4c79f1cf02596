"""Linear-probe fast path: per-epoch cost of running the frozen backbone every epoch vs training the head on
backbone features computed once.

    .venv/bin/python bench/bench_probe.py [--settings demo aircraft] [--repeats 3]

In one process, on the same data, both through finetune.py's own objects (``common.SuiteRun``) and
``Trainer.train_epoch``:

* ``backbone every epoch``: ``freeze_backbone: True`` as finetune.py runs it (training loader with the
  config's augmentation, MindCV's TrainStep over the network with the gradient cut of
  ``tools.train.freeze.cut_gradients``, frozen BatchNorms in inference mode);
* ``cached features``: the same plus ``cache_features: True`` (``tools.train.techniques.linear_probe.cached_training``):
  the frozen backbone and global pool run once over the training split with the evaluation transforms
  (the one-off cost, compilation included, is reported as extraction), then each epoch trains only the
  head on the cached pooled features, shuffled, in batches of ``batch_size``.

With every BatchNorm of the backbone frozen in inference mode the cached features are exactly what the
frozen backbone computes during training, except for data augmentation (the cache holds one
un-augmented view per image; caching K augmented views costs K extraction passes).
"""
import sys

import common


def run_setting(name, config, data_dir, overrides, repeats):
    from tools.core import runtime

    cfg = common.suite_config(config, data_dir=data_dir, freeze_backbone=True, **overrides)
    common.quiet(runtime.setup, cfg)
    full = common.SuiteRun(cfg)
    cached_cfg = common.suite_config(config, data_dir=data_dir, freeze_backbone=True, cache_features=True, **overrides)
    common.quiet(runtime.setup, cached_cfg)  # caps num_parallel_workers to the cores, as finetune.py does
    cached = common.SuiteRun(cached_cfg)
    print(f"[{name}] {cfg.model} {cfg.image_resize}px batch {cfg.batch_size}, {full.data.size} train images, "
          f"{full.steps} steps/epoch; {full.frozen.summary()}", flush=True)
    warm = full.epoch(1)[0]
    cached.epoch(1)
    res = {"model": cfg.model, "image_resize": cfg.image_resize, "batch_size": cfg.batch_size,
           "train_images": full.data.size, "feature_dim": int(cached.loader.output_shapes()[0][1]),
           "backbone_warmup_epoch_seconds": warm, "extract_seconds": cached.extract_seconds,
           "backbone_epoch_seconds": [], "cached_epoch_seconds": [], "repeats": repeats}
    for r in range(repeats):
        res["backbone_epoch_seconds"].append(full.epoch(2 + r)[0])
        res["cached_epoch_seconds"].append(cached.epoch(2 + r)[0])
        print(f"  repeat {r + 1}/{repeats}: backbone {res['backbone_epoch_seconds'][-1]:.2f}s, "
              f"cached {res['cached_epoch_seconds'][-1]:.4f}s", flush=True)
    b, c = common.median(res["backbone_epoch_seconds"]), common.median(res["cached_epoch_seconds"])
    res.update(median_backbone_epoch_seconds=b, median_cached_epoch_seconds=c, speedup_per_epoch=b / c)
    # epochs after which cache + head training beats the backbone every epoch
    res["break_even_epochs"] = res["extract_seconds"] / (b - c) if b > c else None
    return res


def main():
    args = common.settings_parser(__doc__.split("\n")[0], aircraft_images=32).parse_args()
    out = common.run_settings(args, "bench_probe_", lambda name, spec, tmp: run_setting(name, *spec, args.repeats))
    rows = [[name, r["model"], f"{r['image_resize']}px", r["train_images"], r["median_backbone_epoch_seconds"],
             f"{r['median_cached_epoch_seconds']:.4f}", f"{r['speedup_per_epoch']:.0f}x", r["extract_seconds"],
             fmt_epochs(r["break_even_epochs"])] for name, r in out["settings"].items()]
    return common.finish("probe", out, ["setting", "model", "size", "images", "backbone s/epoch", "cached s/epoch",
                                        "per-epoch speed-up", "extract s (once)", "break-even epochs"], rows,
                         "target: >= 10x per epoch")


def fmt_epochs(value):
    return "-" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    sys.exit(main())
