"""The suite's per-step loop overhead: ``Trainer.train_epoch`` reading the loss back every step (what the
loop did before the losses were read at sync points only, and still does with ``log_interval: 1``) vs
once per ``log_interval`` steps (default 100: once per epoch here).

    .venv/bin/python bench/bench_loop.py [--repeats 3] [--demo_images 256]

One process, one network, loader and compiled train step (configs/demo.yaml: mobilenet_v2_100, 96 px,
batch 32, random initialisation); after one warm-up epoch it times whole epochs of the two settings
round-robin and prints the median images/s of each and their ratio, with the load average.
"""
import argparse
import os
import tempfile

import common


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--demo_images", type=int, default=256, help="the first N demo trainval images (0: all)")
    args = parser.parse_args(argv)
    from tools.core.config import update

    header = common.report_header()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = common.make_demo_subset(os.path.join(tmp, "demo"), args.demo_images, 16) \
            if args.demo_images else common.DEMO
        cfg = common.suite_config(common.DEMO_CONFIG, data_dir=data_dir, pretrained=False, ckpt_path="",
                                  tf_same_padding=False, log_interval=100000, ckpt_save_dir=os.path.join(tmp, "o"))
        run = common.SuiteRun(cfg)
        print(f"warm-up epoch {run.epoch()[0]:.1f}s ({run.steps} steps of {cfg.batch_size})")
        rates = {"every step": [], "every log_interval": []}
        for _ in range(args.repeats):
            for name, interval in (("every step", 1), ("every log_interval", 100000)):
                update(cfg, f"bench_loop ({name})", log_interval=interval)
                seconds, images = common.quiet(run.epoch)
                rates[name].append(images / seconds)
                print(f"  loss read {name}: {images / seconds:.1f} images/s  load {os.getloadavg()[0]:.2f}")
    medians = {name: common.median(values) for name, values in rates.items()}
    ratio = medians["every log_interval"] / medians["every step"]
    print(f"median images/s: every step {medians['every step']:.1f}, every log_interval "
          f"{medians['every log_interval']:.1f}; ratio {ratio:.3f}  (load average at end "
          f"{[round(x, 2) for x in os.getloadavg()]})")
    common.write_json("bench_loop", {**header, "args": vars(args), "images_per_s": rates, "ratio": ratio})


if __name__ == "__main__":
    main()
