"""MindSpore context, device, seeds and the data-parallel group."""
import os
import random

from tools.core import memory_guard
from tools.core.config import update
from tools.core.errors import DataError, UsageError
from tools.core.fileio import first_line

import mindspore as ms
import numpy as np

RECURSION_LIMIT = 4000  # MindSpore's graph compiler call depth (its default: 1000)


def _available(target):
    if target == "CPU":
        return True
    try:
        return bool(ms.hal.is_available(target))
    except (AttributeError, RuntimeError, ValueError):
        return False


def setup(cfg):
    """Set mode, device and seeds; join the data-parallel group when ``distribute`` is on.

    Returns ``(num_shards, shard_id)``, ``(None, None)`` when not distributed.
    """
    memory_guard.describe(f"{cfg.model} at batch_size {cfg.batch_size}, image_resize {cfg.image_resize}",
                          cfg.memory_limit_gb)
    target = cfg.device_target
    if target not in ("CPU", "GPU", "Ascend"):
        raise UsageError(f"device_target must be CPU, GPU or Ascend, got '{target}'")
    if not _available(target):
        print(f"note: device_target {target} is not available here; using CPU")
        target = "CPU"
    if cfg.mode == 1 and cfg.gradient_accumulation_steps > 1:
        print("note: MindCV's gradient accumulation only runs in GRAPH mode; using mode 0")
        update(cfg, "gradient_accumulation_steps > 1 (GRAPH mode only)", mode=0)
    ms.set_context(mode=cfg.mode, device_target=target)
    # deep models (MindCV's res2net101: 512 tensors) exceed the compiler's default call depth of 1000 when it
    # builds the train step, in either mode; 4000 trains them (measured), a ceiling that costs nothing below it
    ms.set_recursion_limit(recursion_limit=RECURSION_LIMIT)
    for key in ("amp_level", "val_amp_level"):
        if target == "CPU" and getattr(cfg, key) != "O0":
            print(f"note: {key} {getattr(cfg, key)} needs Ascend; running in float32 (O0) on CPU")
            update(cfg, f"device_target {target} (float32 only)", **{key: "O0"})
    seed_everything(cfg.seed)
    cores = os.cpu_count() or 1
    if cfg.num_parallel_workers > cores:
        print(f"note: num_parallel_workers {cfg.num_parallel_workers} > {cores} CPU cores; using {cores}")
        update(cfg, f"the {cores} CPU cores", num_parallel_workers=cores)
    if not cfg.distribute:
        workers = os.environ.get("MS_WORKER_NUM") or os.environ.get("RANK_SIZE")
        if workers and workers != "1":  # each of the N processes would train the whole run into one folder
            raise UsageError(f"started by a launcher of {workers} workers (msrun) but distribute is False: "
                             "set --distribute True, or run without msrun")
        return None, None
    if "MS_WORKER_NUM" not in os.environ and "RANK_SIZE" not in os.environ:
        print("note: distribute is True but the script was not started by msrun; training on one process")
        return None, None
    from mindspore.communication import get_group_size, get_rank, init

    try:
        init()
    except RuntimeError as err:  # a node that never joined: MindSpore gives up after msrun's cluster_time_out
        expected = os.environ.get("MS_WORKER_NUM") or os.environ.get("RANK_SIZE")
        where = f"{os.environ.get('MS_SCHED_HOST')}:{os.environ.get('MS_SCHED_PORT')}"
        failed = DataError(f"the data-parallel cluster did not form ({expected} workers expected at {where}): "
                           f"{first_line(err).split('. ')[0]}; start every node with the same --worker_num, "
                           "--master_addr and --master_port")
        # nothing is written yet; at a normal exit MindSpore's cluster context joins its heartbeat thread, which
        # waits on the scheduler (17 s on a quiet machine; msrun waits on this process with no timeout of its own)
        failed.skip_exit_handlers = True
        raise failed from None
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True)
    return get_group_size(), get_rank()


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    ms.set_seed(seed)
    ms.dataset.config.set_seed(seed)
