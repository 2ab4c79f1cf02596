"""What the end-of-epoch writes cost beside a training epoch (issue #29: "checkpoint writes that never stall the
step loop: measure the cost first").

    .venv/bin/python bench/bench_checkpoint_write.py [--repeats 3] [--demo_images 0]

One process, the demo setting (configs/demo.yaml: mobilenet_v2_100, 96 px, batch 32, the 600 committed trainval
images, random initialisation): after one warm-up epoch it times, round-robin, a training epoch
(``Trainer.train_epoch``) and each write the Trainer makes after an epoch, as it makes them: the last, best and
epoch checkpoints (``CheckpointSaver.save``, atomic, with a CRC), ``results.txt``/``.csv``, ``training_curves.png``
and the resume state (weights + optimizer state, ``CheckpointSaver.write_state``). Prints the median seconds of
each and the writes' share of an epoch.
"""
import argparse
import os
import tempfile
import time

import common


def timed(fn, *args):
    begin = time.perf_counter()
    fn(*args)
    return time.perf_counter() - begin


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--demo_images", type=int, default=0, help="the first N demo trainval images (0: all)")
    args = parser.parse_args(argv)
    from tools.report.evaluation import plot_training_curves
    from tools.train.checkpoints import write_results

    header = common.report_header()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = common.make_demo_subset(os.path.join(tmp, "demo"), args.demo_images, 16) \
            if args.demo_images else common.DEMO
        out = os.path.join(tmp, "o")
        os.makedirs(out)
        cfg = common.suite_config(common.DEMO_CONFIG, data_dir=data_dir, pretrained=False, ckpt_path="",
                                  tf_same_padding=False, log_interval=100000, ckpt_save_dir=out)
        run = common.SuiteRun(cfg)
        trainer, saver = run.trainer, run.trainer.saver
        print(f"warm-up epoch {run.epoch()[0]:.1f}s ({run.steps} steps of {cfg.batch_size})")
        seconds = {name: [] for name in ("epoch", "checkpoints", "results", "curves", "resume_state")}
        for repeat in range(args.repeats):
            epoch = repeat + 2
            row = {"epoch": epoch, "train_loss": 1.0, "val_loss": 1.0, "top1": 0.5, "top5": 0.9,
                   "mean_per_class_acc": 0.5, "lr": 1e-3, "seconds": 10.0}
            seconds["epoch"].append(common.quiet(run.epoch, epoch)[0])
            trainer.rows.append(row)
            seconds["checkpoints"].append(timed(saver.save, run.network, epoch, row, True))  # last, best, epoch
            seconds["results"].append(timed(write_results, out, trainer.rows))
            seconds["curves"].append(timed(plot_training_curves, trainer.rows, os.path.join(out, "curves.png")))
            seconds["resume_state"].append(timed(trainer.save_state, epoch))
            print("  " + "  ".join(f"{name} {values[-1]:.3f}s" for name, values in seconds.items())
                  + f"  load {os.getloadavg()[0]:.2f}", flush=True)
        sizes = {name: os.path.getsize(os.path.join(out, name)) for name in sorted(os.listdir(out))
                 if name.endswith(".ckpt")}
    medians = {name: common.median(values) for name, values in seconds.items()}
    writes = sum(value for name, value in medians.items() if name != "epoch")
    rows = [[name, medians[name], f"{100 * medians[name] / medians['epoch']:.1f}%"] for name in seconds]
    rows.append(["all writes", writes, f"{100 * writes / medians['epoch']:.1f}%"])
    payload = {**header, "args": vars(args), "seconds": seconds, "medians": medians, "file_bytes": sizes}
    return common.finish("bench_checkpoint_write", payload, ["what", "median s", "of an epoch"],
                         rows, f"file sizes (bytes): {sizes}")


if __name__ == "__main__":
    main()
