"""tools/core/memory_guard.py: a run about to exhaust memory stops with one line (exit 1), not the OOM
killer's SIGKILL."""
import os

from conftest import TINY_TRAIN_ARGS, assert_one_line_error, run_script
from tools.core import memory_guard
from tools.core.memory_guard import GIB

import numpy as np


def test_shortage_names_the_reason():
    assert memory_guard.shortage(available=8 * GIB, resident=2 * GIB, limit_bytes=0) is None
    over = memory_guard.shortage(available=8 * GIB, resident=3 * GIB, limit_bytes=2 * GIB)
    assert "3.00 GiB" in over and "memory_limit_gb 2" in over
    low = memory_guard.shortage(available=GIB // 4, resident=20 * GIB, limit_bytes=0)
    assert "0.2 GiB left" in low and "20.0 GiB" in low
    assert memory_guard.shortage(available=None, resident=20 * GIB, limit_bytes=0) is None  # nothing known


def test_meminfo_reader(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24683772 kB\nMemFree:  9284272 kB\nMemAvailable:   22613064 kB\n")
    assert memory_guard.machine_available(str(meminfo)) == 22613064 * 1024
    assert memory_guard.machine_available(str(tmp_path / "absent")) is None


def test_cgroup_limits_v2_v1_and_none(tmp_path):
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "memory.max").write_text("4294967296\n")
    (v2 / "memory.current").write_text("3221225472\n")
    (v2 / "memory.stat").write_text("anon 100\ninactive_file 536870912\nactive_file 7\n")
    assert memory_guard.cgroup_available(str(v2)) == GIB + GIB // 2  # reclaimable cache counts as free
    (v2 / "memory.max").write_text("max\n")
    assert memory_guard.cgroup_available(str(v2)) is None
    v1 = tmp_path / "v1" / "memory"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "unlimited"
    (v1 / "memory.usage_in_bytes").write_text("15221104640\n")
    assert memory_guard.cgroup_available(str(tmp_path / "v1")) is None
    (v1 / "memory.limit_in_bytes").write_text(f"{2 * GIB}\n")
    (v1 / "memory.usage_in_bytes").write_text(f"{GIB}\n")
    (v1 / "memory.stat").write_text("cache 9\ntotal_inactive_file 1024\n")
    assert memory_guard.cgroup_available(str(tmp_path / "v1")) == GIB + 1024


def test_process_resident_follows_this_process():
    before = memory_guard.process_resident()
    block = np.ones(256 * 1024 ** 2 // 8)  # 256 MiB, touched
    grown = memory_guard.process_resident() - before
    assert 200 * 1024 ** 2 < grown < 400 * 1024 ** 2, grown
    del block


def test_finetune_over_its_memory_limit_stops_with_one_line(tiny_aircraft, tmp_path):
    """Reproduces a model that does not fit, at a limit this tiny run passes while compiling or training
    (it peaks well above 1 GiB; MindSpore alone holds ~0.4 GiB after import)."""
    out = str(tmp_path / "run")
    proc = run_script("finetune.py", "--data_dir", tiny_aircraft, *TINY_TRAIN_ARGS, "--ckpt_save_dir", out,
                      "--memory_limit_gb", "0.8")
    line = assert_one_line_error(proc, "mobilenet_v3_small_100 at batch_size 8, image_resize 32", "needs more memory",
                                 "over memory_limit_gb 0.8", code=memory_guard.EXIT_CODE)
    assert line.startswith("error: "), line
    assert not os.path.exists(os.path.join(out, "summary.json"))  # not a finished run
