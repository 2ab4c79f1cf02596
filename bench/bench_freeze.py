"""Step time with frozen layers vs full fine-tuning, and what cutting gradients at the frozen boundary gives.

    .venv/bin/python bench/bench_freeze.py [--repeats 3] [--steps 3] [--image_resize 600] [--batch_size 8]

mobilenet_v3_small_100 with the Aircraft config (600 px, batch 8, momentum, random init), the suite's
own objects (tools.train.wiring.build_model, tools.train.train_step.build_train_step = MindCV's TrainStep) on
one in-memory batch, so only the train step is timed. Modes, timed round-robin in one process after a
compile + warm-up step each (median of ``--repeats`` timings of ``--steps`` steps):

* ``full``: nothing frozen;
* ``freeze_layers 7``: features.0-6 frozen (``requires_grad=False``, their BatchNorms in inference mode);
* ``freeze_backbone``: every feature block frozen, the head trains;
* ``... + stop_gradient``: the same freezing, trained through ``tools.train.freeze.cut_gradients`` as finetune.py
  does (``ops.stop_gradient`` after the last frozen block, parameter names unchanged); the modes without it
  are the suite before that change (``requires_grad=False`` only).

``--check`` first verifies at 64 px that the cut network gives the same loss and the same gradients for
every trainable parameter as the plain frozen network (in inference mode, so dropout is off).
"""
import argparse
import sys

import common

MODES = [
    ("full", dict(), False),
    ("freeze_layers 7", dict(freeze_layers=7), False),
    ("freeze_layers 7 + stop_gradient", dict(freeze_layers=7), True),
    ("freeze_backbone", dict(freeze_backbone=True), False),
    ("freeze_backbone + stop_gradient", dict(freeze_backbone=True), True),
]


def build_mode(base_overrides, overrides, cut, num_classes=100):
    from tools.train.freeze import cut_gradients
    from tools.train.train_step import build_train_step
    from tools.train.wiring import build_model

    cfg = common.suite_config(common.AIRCRAFT_CONFIG, **base_overrides, **overrides)
    network, report, loss, _, optimizer = common.quiet(build_model, cfg, num_classes, 10, verbose=False)
    forward = cut_gradients(network, report.frozen_blocks) if cut else network
    step = build_train_step(cfg, forward, loss, optimizer)
    return cfg, network, forward, step, report, loss


def check_cut():
    """Same loss and gradients (trainable parameters) with and without the suite's cut, at 64 px."""
    import mindspore as ms
    import numpy as np
    from mindspore import nn, ops

    results = {}
    for name, overrides in (("freeze_layers 7", dict(freeze_layers=7)),
                            ("freeze_backbone", dict(freeze_backbone=True))):
        cfg, network, forward, _, _, loss = build_mode(dict(pretrained=False, image_resize=64, batch_size=4), overrides,
                                                      True)
        network.set_train(False)
        rng = np.random.default_rng(1)
        for param in network.trainable_params():  # MindCV's head starts near zero: make the gradients non-trivial
            if param.name.startswith("classifier"):
                param.set_data(ms.Tensor(rng.normal(0, 0.05, param.shape).astype(np.float32)))
        weights = ms.ParameterTuple(network.trainable_params())
        images, labels = common.fake_batch(cfg, 100)
        grads = {}
        for label, net in (("plain", network), ("cut", forward)):
            with_loss = nn.WithLossCell(net, loss)
            grad_fn = ops.GradOperation(get_by_list=True)(with_loss, weights)
            grads[label] = ([g.asnumpy() for g in grad_fn(images, labels)], float(with_loss(images, labels).asnumpy()))
        diff = max(float(np.abs(a - b).max()) for a, b in zip(grads["plain"][0], grads["cut"][0]))
        scale = max(float(np.abs(a).max()) for a in grads["plain"][0])
        results[name] = {"trainable_tensors": len(weights), "max_abs_grad_diff": diff, "max_abs_grad": scale,
                         "loss_plain": grads["plain"][1], "loss_cut": grads["cut"][1]}
        print(f"check {name}: {len(weights)} trainable tensors, loss {grads['plain'][1]:.5f} vs {grads['cut'][1]:.5f}, "
              f"max |grad difference| {diff:.2e} (max |grad| {scale:.2e})", flush=True)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="steps per timing")
    parser.add_argument("--image_resize", type=int, default=600)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--mode", type=int, default=0, help="0 GRAPH, 1 PYNATIVE")
    parser.add_argument("--check", action="store_true", help="verify the cut's gradients first (64 px)")
    parser.add_argument("--modes", nargs="+", type=int, help="indices of the modes to run (default: all), in order")
    parser.add_argument("--back_to_back", action="store_true",
                        help="time each mode right after its compilation (results arrive mode by mode on a slow "
                             "machine) instead of round-robin after all are compiled")
    args = parser.parse_args()
    import mindspore as ms

    header = common.report_header()
    ms.set_context(mode=args.mode, device_target="CPU")
    ms.set_seed(0)
    out = {**header, "model": "mobilenet_v3_small_100", "image_resize": args.image_resize,
           "batch_size": args.batch_size, "graph_mode": args.mode == 0, "steps_per_timing": args.steps,
           "repeats": args.repeats, "modes": {}}
    if args.check:
        out["check"] = check_cut()
    base = dict(pretrained=False, image_resize=args.image_resize, batch_size=args.batch_size)
    runs = {}
    modes = [MODES[i] for i in args.modes] if args.modes else MODES
    out["order"] = "back-to-back" if args.back_to_back else "round-robin"
    for name, overrides, cut in modes:
        cfg, network, forward, step, report, _ = build_mode(base, overrides, cut)
        batch = common.fake_batch(cfg, 100)
        compile_s = common.time_steps(step, batch, 1)
        common.time_steps(step, batch, 1)
        runs[name] = (step, batch)
        out["modes"][name] = {"first_step_seconds": compile_s, "step_seconds": [],
                              "trainable_params": report.trainable_params, "frozen_params": report.frozen_params,
                              "frozen_bn_layers": report.frozen_bn_layers}
        print(f"{name}: compiled in {compile_s:.1f}s; {report.summary()}", flush=True)
        if args.back_to_back:
            for r in range(args.repeats):
                out["modes"][name]["step_seconds"].append(common.time_steps(step, batch, args.steps) / args.steps)
            print(f"  {name}: steps {', '.join(f'{t:.3f}s' for t in out['modes'][name]['step_seconds'])}", flush=True)
            del runs[name]
    for r in range(0 if args.back_to_back else args.repeats):
        for name, (step, batch) in runs.items():
            out["modes"][name]["step_seconds"].append(common.time_steps(step, batch, args.steps) / args.steps)
        print(f"repeat {r + 1}/{args.repeats}: " + ", ".join(
            f"{n} {m['step_seconds'][-1]:.3f}s" for n, m in out["modes"].items()), flush=True)
    full = common.median(out["modes"][modes[0][0]]["step_seconds"])
    rows = []
    for name, m in out["modes"].items():
        m["median_step_seconds"] = common.median(m["step_seconds"])
        m["vs_full"] = m["median_step_seconds"] / full
        lo, hi = common.spread(m["step_seconds"])
        rows.append([name, m["median_step_seconds"] * 1000, f"{lo * 1000:.0f}-{hi * 1000:.0f}", f"{m['vs_full']:.2f}x",
                     args.batch_size / m["median_step_seconds"], f"{m['trainable_params']:,}"])
    print()
    common.print_table(["mode", "step ms (median)", "min-max", f"vs {modes[0][0]}", "images/s", "trainable params"],
                       rows)
    print("target: freeze_backbone <= 0.4x full")
    common.write_json("freeze" if args.mode == 0 else "freeze_pynative", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
