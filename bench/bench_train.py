"""Training throughput of the suite vs a bare MindSpore train step (the ceiling) vs MindCV's own pipeline.

    .venv/bin/python bench/bench_train.py [--settings demo aircraft] [--repeats 3]

In one process and on the same data, after one warm-up (compilation) epoch each, it times whole
training epochs, round-robin, ``--repeats`` times, and reports the median images/s of:

* ``suite``: finetune.py's objects (open_split -> build_loader -> create_network -> apply_freezing ->
  create_loss -> build_lr_schedule -> build_optimizer -> build_train_step) driven by
  ``Trainer.train_epoch``, on the raw Aircraft layout (the suite's lazy reader); optionally
  (``--pipelines suite-folder``, demo only) on the ImageNet-style tree made by tools/split_aircraft.py;
* ``suite-loop`` (optional): the same Trainer and train step fed by MindCV's loader (below) instead of
  the suite's, which splits a gap between ``suite`` and ``mindcv`` into the loop's share and the loader's;
* ``suite-step`` (optional): the suite's train step alone on the ceiling's in-memory batch;
* ``ceiling``: ``nn.TrainOneStepCell(nn.WithLossCell(net, loss), optimizer)`` over the same network,
  loss and optimizer on one in-memory batch of the same shape (no data pipeline at all);
* ``mindcv``: MindCV's fine-tuning example written with its public API (create_dataset on the tree,
  create_transforms, create_loader, create_model, create_loss, create_scheduler, create_optimizer,
  mindcv.utils.create_trainer -> Model.train) with ``dataset_sink_mode`` False and True.

Settings: ``demo`` = configs/demo.yaml (mobilenet_v2_100, 96 px, batch 32, the committed 600 trainval
images) and ``aircraft`` = configs/mobilenetv3/mobilenet_v3_small_aircraft.yaml (mobilenet_v3_small_100,
600 px, batch 8, randaug-m7-mstd0.5) on synthetic 500x375 JPEGs in Aircraft layout (made from the demo
images in a temporary folder). Random initialisation; ``tf_same_padding`` is off so that all rows run
the same network as MindCV's ``create_model``.
"""
import os
import sys
import time

import common


class Ceiling:
    """A bare MindSpore train step over the suite's network/loss/optimizer on an in-memory batch."""

    def __init__(self, cfg, num_classes, steps):
        from tools.models.factory import create_network
        from tools.train.optimizer import build_optimizer
        from tools.train.schedule import build_lr_schedule

        from mindcv.loss import create_loss
        from mindspore import nn

        self.cfg, self.steps = cfg, steps
        self.network = common.quiet(create_network, cfg, num_classes)
        loss = create_loss(name=cfg.loss, reduction=cfg.reduction, label_smoothing=cfg.label_smoothing)
        optimizer = build_optimizer(cfg, self.network, build_lr_schedule(cfg, steps), verbose=False)
        self.step = nn.TrainOneStepCell(nn.WithLossCell(self.network, loss), optimizer).set_train()
        self.batch = common.fake_batch(cfg, num_classes)

    def epoch(self, epoch=1):
        return common.time_steps(self.step, self.batch, self.steps), self.steps * self.cfg.batch_size


def mindcv_loader(cfg, tree_dir, num_classes):
    """MindCV's training loader as its fine-tuning example builds it (ImageFolder tree, its transforms)."""
    from mindcv.data import create_dataset, create_loader, create_transforms

    dataset = create_dataset(name="", root=tree_dir, split=cfg.train_split, shuffle=True,
                             num_parallel_workers=cfg.num_parallel_workers)
    transforms = create_transforms(dataset_name="", image_resize=cfg.image_resize, is_training=True,
                                   auto_augment=cfg.auto_augment, scale=tuple(cfg.scale), ratio=tuple(cfg.ratio),
                                   hflip=cfg.hflip, color_jitter=cfg.color_jitter, interpolation=cfg.interpolation,
                                   mean=cfg.mean, std=cfg.std)
    return create_loader(dataset=dataset, batch_size=cfg.batch_size, drop_remainder=True, is_training=True,
                         num_classes=num_classes, transform=transforms, num_parallel_workers=cfg.num_parallel_workers)


class SuiteStep:
    """The suite's train step (finetune.py's) alone on the in-memory batch: the ceiling's twin, so the
    difference between the two is the train step's own cost."""

    def __init__(self, cfg, steps):
        self.run, self.cfg, self.steps = common.SuiteRun(cfg), cfg, steps
        self.batch = common.fake_batch(cfg, self.run.num_classes)

    def epoch(self, epoch=1):
        return common.time_steps(self.run.train_step, self.batch, self.steps), self.steps * self.cfg.batch_size


def mindcv_trainer(cfg, num_classes, steps):
    """MindCV's network and ``Model`` for ``cfg`` as its public API builds them (create_model, create_loss,
    create_scheduler, create_optimizer, create_trainer at loss scale 1), ``steps`` batches per epoch."""
    from mindcv.loss import create_loss
    from mindcv.models import create_model
    from mindcv.optim import create_optimizer
    from mindcv.scheduler import create_scheduler
    from mindcv.utils import create_trainer

    network = create_model(model_name=cfg.model, num_classes=num_classes, pretrained=False)
    loss = create_loss(name=cfg.loss, reduction=cfg.reduction, label_smoothing=cfg.label_smoothing)
    lrs = create_scheduler(steps, scheduler=cfg.scheduler, lr=cfg.lr, min_lr=cfg.min_lr,
                           warmup_epochs=cfg.warmup_epochs, decay_epochs=max(cfg.epoch_size - cfg.warmup_epochs, 1),
                           num_epochs=cfg.epoch_size)
    optimizer = create_optimizer(network.trainable_params(), opt=cfg.opt, lr=lrs, weight_decay=cfg.weight_decay,
                                 momentum=cfg.momentum, weight_decay_filter=cfg.weight_decay_filter)
    return network, create_trainer(network, loss, optimizer, {"acc"}, amp_level="O0", amp_cast_list=None,
                                   loss_scale_type="fixed", loss_scale=1.0)


class MindCVPipeline:
    """MindCV 0.3.0's examples/finetune flow with its public API, trained by ``Model.train``."""

    def __init__(self, cfg, tree_dir, num_classes, sink):
        from mindspore.train.callback import Callback

        self.cfg, self.sink = cfg, sink
        self.loader = mindcv_loader(cfg, tree_dir, num_classes)
        self.steps = self.loader.get_dataset_size()
        self.network, self.model = mindcv_trainer(cfg, num_classes, self.steps)
        times = self.times = []

        class EpochTimer(Callback):
            def on_train_epoch_begin(self, run_context):
                times.append(time.perf_counter())

            def on_train_epoch_end(self, run_context):
                times[-1] = time.perf_counter() - times[-1]

        self.timer = EpochTimer()

    def epoch(self, epoch=1):
        begin = time.perf_counter()
        self.model.train(1, self.loader, callbacks=[self.timer], dataset_sink_mode=self.sink)
        total = time.perf_counter() - begin
        return total, self.steps * self.cfg.batch_size


def run_setting(name, spec, repeats, tmp, pipelines):
    config, data_dir, overrides = spec
    from tools.core import runtime

    cfg = common.suite_config(config, data_dir=data_dir, **overrides)
    common.quiet(runtime.setup, cfg)
    tree = common.folder_tree(data_dir, os.path.join(tmp, f"{name}_tree"))
    runners = {}
    suite = common.SuiteRun(cfg)
    num_classes, steps = suite.num_classes, suite.steps
    runners["suite"] = suite
    if "suite-folder" in pipelines:
        runners["suite-folder"] = common.SuiteRun(common.suite_config(config, data_dir=tree, **overrides))
    if "suite-loop" in pipelines:  # the suite's loop and train step fed by MindCV's loader: loop vs loader
        runners["suite-loop"] = common.SuiteRun(cfg)
        runners["suite-loop"].loader = mindcv_loader(cfg, tree, num_classes)
    if "suite-step" in pipelines:
        runners["suite-step"] = SuiteStep(cfg, steps)
    runners["ceiling"] = Ceiling(cfg, num_classes, steps)
    if "mindcv" in pipelines:
        runners["mindcv"] = MindCVPipeline(cfg, tree, num_classes, sink=False)
    if "mindcv-sink" in pipelines:
        runners["mindcv-sink"] = MindCVPipeline(cfg, tree, num_classes, sink=True)
    results = {key: {"epoch_seconds": [], "images_per_s": [], "error": None} for key in runners}
    print(f"[{name}] {cfg.model} {cfg.image_resize}px batch {cfg.batch_size}, {steps} steps/epoch, "
          f"workers {cfg.num_parallel_workers}, aug {cfg.auto_augment}; warm-up epoch each", flush=True)
    for key, runner in list(runners.items()):
        try:
            seconds, _ = runner.epoch(1)
            results[key]["warmup_seconds"] = seconds
            print(f"  {key}: warm-up epoch {seconds:.1f}s", flush=True)
        except Exception as err:  # a pipeline that fails (e.g. sink mode) is reported, not fatal
            results[key]["error"] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            print(f"  {key}: failed: {results[key]['error']}", flush=True)
            del runners[key]
    for r in range(repeats):
        for key, runner in runners.items():
            seconds, images = runner.epoch(2 + r)
            results[key]["epoch_seconds"].append(seconds)
            results[key]["images_per_s"].append(images / seconds)
            if isinstance(runner, MindCVPipeline) and runner.times:
                results[key].setdefault("callback_epoch_seconds", []).append(runner.times[-1])
        print(f"  repeat {r + 1}/{repeats}: " + ", ".join(
            f"{k} {results[k]['images_per_s'][-1]:.1f}" for k in runners), flush=True)
    for key, res in results.items():
        res["median_images_per_s"] = common.median(res["images_per_s"])
        res["min_max_images_per_s"] = common.spread(res["images_per_s"])
    base = {"model": cfg.model, "image_resize": cfg.image_resize, "batch_size": cfg.batch_size,
            "steps_per_epoch": steps, "num_parallel_workers": cfg.num_parallel_workers,
            "auto_augment": cfg.auto_augment, "train_images": suite.data.size, "repeats": repeats}
    return dict(base, pipelines=results)


def main():
    parser = common.settings_parser(__doc__.split("\n")[0], aircraft_images=32)
    parser.add_argument("--pipelines", nargs="+", default=["mindcv", "mindcv-sink"],
                        help="besides suite and ceiling: suite-folder suite-loop suite-step mindcv mindcv-sink")
    args = parser.parse_args()

    def run(name, spec, tmp):
        pipelines = args.pipelines if name == "demo" else [p for p in args.pipelines if p != "suite-folder"]
        return run_setting(name, spec, args.repeats, tmp, pipelines)

    # tf_same_padding off: every row runs the network of MindCV's create_model
    out = common.run_settings(args, "bench_train_", run, tf_same_padding=False)
    rows = []
    for name, res in out["settings"].items():
        p = res["pipelines"]
        ceiling = p["ceiling"]["median_images_per_s"]
        mindcv = p.get("mindcv", {}).get("median_images_per_s")
        for key, r in p.items():
            med = r["median_images_per_s"]
            rows.append([name, key, med,
                         f"{r['min_max_images_per_s'][0] or 0:.1f}-{r['min_max_images_per_s'][1] or 0:.1f}",
                         f"{med / ceiling:.2f}x" if med and ceiling else "-",
                         f"{med / mindcv:.2f}x" if med and mindcv else "-", r["error"] or ""])
        res["suite_vs_ceiling"] = p["suite"]["median_images_per_s"] / ceiling if ceiling else None
        res["suite_vs_mindcv"] = p["suite"]["median_images_per_s"] / mindcv if mindcv else None
    return common.finish("train", out, ["setting", "pipeline", "images/s (median)", "min-max", "vs ceiling",
                                        "vs mindcv", "error"], rows, "targets: suite >= 0.9x ceiling, >= 1.0x mindcv")


if __name__ == "__main__":
    sys.exit(main())
