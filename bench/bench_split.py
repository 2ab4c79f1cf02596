"""tools/split_aircraft.py at FGVC-Aircraft scale: seconds for --mode hardlink vs --mode copy.

    .venv/bin/python bench/bench_split.py [--images 10000] [--repeats 3]

Makes a 10,000-image raw Aircraft layout (6,667 trainval + 3,333 test, 100 variants with '/' and spaces;
200 distinct 500x375 JPEGs made from the demo images, the rest hard links) in a temporary folder, then
runs ``python tools/split_aircraft.py --data_dir D --out_dir O --mode M`` as a user would, alternating
modes, ``--repeats`` times each into a fresh ``O`` on the same filesystem (removed after each run).
Times are wall-clock of the whole command (interpreter start included) with a warm page cache.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import common


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", nargs="+", default=["hardlink", "copy"])
    args = parser.parse_args()
    header = common.report_header()
    out = {**header, "images": args.images,
           "modes": {m: {"seconds": []} for m in args.modes}}
    tool = os.path.join(common.ROOT, "tools", "split_aircraft.py")
    with tempfile.TemporaryDirectory(prefix="bench_split_") as tmp:
        data = common.make_aircraft(os.path.join(tmp, "data"), trainval=args.images * 2 // 3,
                                    test=args.images - args.images * 2 // 3, distinct=200)
        sizes = [os.path.getsize(os.path.join(data, "images", n)) for n in os.listdir(os.path.join(data, "images"))]
        out["dataset_encoded_mb"] = sum(sizes) / 2**20
        print(f"{len(sizes)} images, {out['dataset_encoded_mb']:.0f} MB if copied", flush=True)
        for r in range(args.repeats):
            for mode in args.modes:
                dest = os.path.join(tmp, f"tree_{mode}")
                begin = time.perf_counter()
                proc = subprocess.run([sys.executable, tool, "--data_dir", data, "--out_dir", dest, "--mode", mode],
                                      capture_output=True, text=True)
                seconds = time.perf_counter() - begin
                if proc.returncode != 0:
                    raise SystemExit(f"split_aircraft failed ({mode}): {proc.stderr.strip()}")
                out["modes"][mode]["seconds"].append(seconds)
                out["modes"][mode]["last_line"] = proc.stdout.strip().splitlines()[-1]
                shutil.rmtree(dest)
            print(f"  repeat {r + 1}/{args.repeats}: " + ", ".join(
                f"{m} {v['seconds'][-1]:.2f}s" for m, v in out["modes"].items()), flush=True)
    rows = []
    base = common.median(out["modes"][args.modes[0]]["seconds"])
    for mode, v in out["modes"].items():
        v["median_seconds"] = common.median(v["seconds"])
        lo, hi = common.spread(v["seconds"])
        rows.append([mode, f"{v['median_seconds']:.2f}", f"{lo:.2f}-{hi:.2f}", args.images / v["median_seconds"],
                     f"{v['median_seconds'] / base:.2f}x", v["last_line"]])
    print()
    common.print_table(["mode", "seconds (median)", "min-max", "images/s", f"vs {args.modes[0]}", "tool's last line"],
                       rows)
    common.write_json("split", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
