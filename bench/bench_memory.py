"""Peak memory (RSS) of reading an Aircraft-scale folder lazily vs into memory, and of finetune.py.

    .venv/bin/python bench/bench_memory.py [--images 10000] [--repeats 3] [--finetune_repeats 1]

Every figure comes from a fresh child process:

* ``lazy``: the suite's reader (``tools.datasets.loader.open_split`` -> tools/datasets/image_files.py, as finetune.py
  opens a training split) over all ``--images`` images (one annotation file listing them all), iterated
  once (encoded bytes, as the loader receives them);
* ``in-memory``: the design document's ``ImageClsDataset`` (reads every image's bytes into a list up
  front; copied verbatim from the guide) wrapped in the same GeneratorDataset and iterated once;
* peak RSS is VmHWM from /proc/self/status; reported as MB over the child's own baseline (VmHWM
  after its imports, before the dataset is opened);
* ``finetune.py``: the demo config for 1 epoch, and the Aircraft config on synthetic 500x375 images
  (40 trainval / 8 test, batch 8: 5 steps + validation), peak RSS of the process (``ru_maxrss`` of
  the children of a wrapper process), and over a bare ``import mindspore, mindcv`` interpreter.

The 10,000-image folder is made in a temporary directory: 200 distinct 500x375 JPEGs made from the demo
images, the rest hard links (a few MB on disk), deleted at the end.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import common

WRAPPER = ("import resource, subprocess, sys, json, time; t = time.time(); "
           "p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE); "
           "print(json.dumps({'rc': p.returncode, "
           "'maxrss_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,"
           " 'seconds': time.time() - t, 'stderr_tail': p.stderr.decode(errors='replace')[-400:]}))")


class ImageClsDataset:
    """The design document's online dataset, verbatim (reads every image into memory)."""

    def __init__(self, annotation_dir, images_dir):
        import numpy as np

        self.annotation = {}
        with open(annotation_dir, "r") as f:
            lines = f.readlines()
            for line in lines:
                image_label = line.replace("\n", "").replace("/", "_").split(" ")
                image = image_label[0] + ".jpg"
                label = " ".join(image_label[1:])
                self.annotation[image] = label
        self.label2id = {}
        labels = sorted(list(set(self.annotation.values())))
        for i in labels:
            self.label2id[i] = labels.index(i)
        for image, label in self.annotation.items():
            self.annotation[image] = self.label2id[label]
        label2images = {key: [] for key in self.label2id.values()}
        for image, label in self.annotation.items():
            read_image = np.fromfile(images_dir + image, dtype=np.uint8)
            label2images[label].append(read_image)
        self._data = sum(list(label2images.values()), [])
        self._label = sum([[i] * len(label2images[i]) for i in label2images.keys()], [])

    def __getitem__(self, index):
        return self._data[index], self._label[index]

    def __len__(self):
        return len(self._data)


def child(kind, data_dir):
    """Run in a fresh process: open and iterate the 'all' split; print JSON with VmHWM figures."""
    from tools.datasets.loader import open_split

    import mindspore.dataset as ds

    cfg = common.suite_config(common.AIRCRAFT_CONFIG, data_dir=data_dir, train_split="all", num_parallel_workers=2)
    base = common.vm_hwm_mb()
    begin = time.perf_counter()
    if kind == "lazy":  # the suite's reader, opened as finetune.py opens a training split
        dataset = open_split(cfg, "all", training=True).dataset
    else:
        source = ImageClsDataset(os.path.join(data_dir, "images_variant_all.txt"),
                                 os.path.join(data_dir, "images") + "/")
        dataset = ds.GeneratorDataset(source, column_names=["image", "label"], shuffle=True, num_parallel_workers=2,
                                      python_multiprocessing=False)
    opened = common.vm_hwm_mb()
    count, total = 0, 0
    for image, *_ in dataset.create_tuple_iterator(num_epochs=1, output_numpy=True):  # training adds an index
        count += 1
        total += image.nbytes
    print(json.dumps({"kind": kind, "baseline_mb": base, "after_open_mb": opened, "peak_mb": common.vm_hwm_mb(),
                      "images": count, "encoded_mb": total / 2**20, "seconds": time.perf_counter() - begin}))


def run_child(args):
    out = subprocess.run([sys.executable, os.path.abspath(__file__), *args], capture_output=True, text=True,
                         env=dict(os.environ, GLOG_v="3"), cwd=common.ROOT)
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"child {args} failed: {out.stderr[-800:]}")


def wrapped(cmd):
    out = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], capture_output=True, text=True,
                         env=dict(os.environ, GLOG_v="3"), cwd=common.ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--finetune_repeats", type=int, default=1)
    parser.add_argument("--skip_finetune", action="store_true")
    args = parser.parse_args()
    header = common.report_header()
    out = {**header, "images": args.images}
    with tempfile.TemporaryDirectory(prefix="bench_memory_") as tmp:
        data = common.make_aircraft(os.path.join(tmp, "data"), trainval=args.images * 2 // 3,
                                    test=args.images - args.images * 2 // 3, distinct=200)
        with open(os.path.join(data, "images_variant_all.txt"), "w", encoding="utf-8") as f:
            for split in ("trainval", "test"):
                with open(os.path.join(data, f"images_variant_{split}.txt"), encoding="utf-8") as g:
                    f.write(g.read())
        sizes = [os.path.getsize(os.path.join(data, "images", n)) for n in os.listdir(os.path.join(data, "images"))]
        out["dataset_encoded_mb"] = sum(sizes) / 2**20
        print(f"{len(sizes)} images, {out['dataset_encoded_mb']:.0f} MB encoded "
              f"(mean {sum(sizes) / len(sizes) / 1024:.0f} KB)", flush=True)
        readers = {"lazy": [], "in-memory": []}
        for r in range(args.repeats):
            for kind in readers:
                readers[kind].append(run_child(["--child", "lazy" if kind == "lazy" else "memory", data]))
            print(f"  repeat {r + 1}/{args.repeats}: " + ", ".join(
                f"{k} +{v[-1]['peak_mb'] - v[-1]['baseline_mb']:.0f} MB" for k, v in readers.items()), flush=True)
        out["readers"] = {k: {"runs": v,
                              "median_over_baseline_mb": common.median([x["peak_mb"] - x["baseline_mb"] for x in v]),
                              "median_baseline_mb": common.median([x["baseline_mb"] for x in v]),
                              "median_seconds": common.median([x["seconds"] for x in v])} for k, v in readers.items()}
        if not args.skip_finetune:
            air = common.make_aircraft(os.path.join(tmp, "air_small"), trainval=40, test=8, distinct=48)
            py = sys.executable
            commands = {
                "interpreter (import mindspore, mindcv)": [py, "-c", "import mindspore, mindcv"],
                "finetune.py demo, 1 epoch": [py, "finetune.py", "--config", "configs/demo.yaml", "--epoch_size", "1",
                                              "--ckpt_save_dir", os.path.join(tmp, "ft_demo"), "--overwrite", "True"],
                "finetune.py Aircraft config, 5 steps": [py, "finetune.py", "--config", common.AIRCRAFT_CONFIG,
                                                          "--data_dir", air, "--pretrained", "False",
                                                          "--epoch_size", "1", "--ckpt_save_dir",
                                                          os.path.join(tmp, "ft_air"), "--overwrite", "True"],
            }
            if not os.path.isfile(os.path.join(common.ROOT, "checkpoints", "mobilenet_v2_100_keras_imagenet.ckpt")):
                commands["finetune.py demo, 1 epoch"] += ["--ckpt_path", ""]
            out["processes"] = {}
            for name, cmd in commands.items():
                runs = [wrapped(cmd) for _ in range(1 if name.startswith("interpreter") else args.finetune_repeats)]
                out["processes"][name] = {"runs": runs,
                                          "median_maxrss_mb": common.median([x["maxrss_mb"] for x in runs]),
                                          "command": " ".join(os.path.relpath(c, common.ROOT) if c.startswith(tmp)
                                                              else c for c in cmd[1:])}
                print(f"  {name}: peak RSS {out['processes'][name]['median_maxrss_mb']:.0f} MB "
                      f"(rc {runs[-1]['rc']}, {runs[-1]['seconds']:.0f}s)", flush=True)
                if runs[-1]["rc"] != 0:
                    print(runs[-1]["stderr_tail"])
    print()
    rows = [[f"{k} reader, {args.images} images", r["median_baseline_mb"], r["median_over_baseline_mb"],
             r["median_seconds"]] for k, r in out["readers"].items()]
    common.print_table(["what", "baseline MB", "peak over baseline MB", "seconds"], rows)
    if "processes" in out:
        base = out["processes"]["interpreter (import mindspore, mindcv)"]["median_maxrss_mb"]
        rows = [[k, p["median_maxrss_mb"], p["median_maxrss_mb"] - base] for k, p in out["processes"].items()]
        print()
        common.print_table(["process", "peak RSS MB", "over import-only interpreter MB"], rows)
    common.write_json("memory", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
