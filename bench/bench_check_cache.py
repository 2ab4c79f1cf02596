"""Opening a 10,000-image split: the image check without a cache on one core, the first open on every
core (cache filled), and a re-open from the cache.

    .venv/bin/python bench/bench_check_cache.py [--images 10000] [--size 1024 768] [--repeats 3]

Makes a raw Aircraft layout with one split of ``--images`` JPEGs of ``--size`` (FGVC-Aircraft's photos
are about 1024x768; ``--distinct`` real files made from the demo images, the rest hard links, so every
path is still opened and decoded) in a temporary folder, then times ``tools.datasets.loader.open_split`` as the
scripts call it (annotation parsing, the check, the GeneratorDataset), in one process:

* ``no cache, 1 core``: ``check_cache_dir: off`` with the check held to one process (the suite before
  the cache);
* ``first open, all cores``: an empty cache folder; new files are checked on every core;
* ``re-open (cached)``: the same cache folder again, ``--repeats`` times.

Everything is deleted afterwards; the cache folder is a temporary one, not ``~/.cache``.
"""
import argparse
import os
import sys
import tempfile
import time

import common


def timed_open(cfg, split):
    from tools.datasets.loader import open_split

    begin = time.perf_counter()
    data = common.quiet(open_split, cfg, split)
    return time.perf_counter() - begin, data.size


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--size", type=int, nargs=2, default=[1024, 768])
    parser.add_argument("--distinct", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from tools.core.config import update
    from tools.datasets import check_cache

    header = common.report_header()
    out = {**header, "images": args.images, "size": args.size, "cores": check_cache.cpu_count(), "variants": {}}
    with tempfile.TemporaryDirectory(prefix="bench_check_cache_") as tmp:
        data = common.make_aircraft(os.path.join(tmp, "data"), trainval=args.images, test=0,
                                    distinct=args.distinct, size=tuple(args.size))
        print(f"{args.images} images of {args.size[0]}x{args.size[1]} in {data}", flush=True)
        cache = os.path.join(tmp, "cache")
        cfg = common.suite_config(common.AIRCRAFT_CONFIG, data_dir=data, check_cache_dir="off",
                                  num_parallel_workers=1)
        all_cores = check_cache.cpu_count
        check_cache.cpu_count = lambda: 1
        variants = {"no cache, 1 core": [timed_open(cfg, "trainval")]}
        check_cache.cpu_count = all_cores
        update(cfg, "bench_check_cache (the cached variants)", check_cache_dir=cache)
        variants["first open, all cores"] = [timed_open(cfg, "trainval")]
        variants["re-open (cached)"] = [timed_open(cfg, "trainval") for _ in range(args.repeats)]
    rows = []
    base = variants["no cache, 1 core"][0][0]
    for name, runs in variants.items():
        seconds = [s for s, _ in runs]
        out["variants"][name] = {"seconds": seconds, "median_seconds": common.median(seconds),
                                 "images_opened": runs[0][1]}
        lo, hi = common.spread(seconds)
        rows.append([name, f"{common.median(seconds):.2f}", f"{lo:.2f}-{hi:.2f}", len(seconds),
                     f"{base / common.median(seconds):.1f}x", runs[0][1]])
    print()
    common.print_table(["variant", "seconds (median)", "min-max", "runs", "vs no cache", "images"], rows)
    common.write_json("check_cache", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
