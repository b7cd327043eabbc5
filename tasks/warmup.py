"""Warm the Ray workers a run needs while the flow plans: the fixed start-up, paid once and measured apart.

    warming = start_warmup("my_pkg.t:clean", coordinators=2, **remote_options)   # returns at once
    plan = plan_job(...)                                                         # overlaps the warm-up
    finish_warmup(warming, logger)                                               # or cancel_warmup()

A fresh Ray worker imports Prefect's task engine, Ray Data, pandas, pyarrow and the transform in 2-4 s on 2
cores, and the first Dataset of a cluster starts Ray Data's own actors. Ray hands any idle worker of the job
to any task: a block task can take the worker a coordinator warmed, and a coordinator the worker of a
block. So every warmed worker imports everything: one per concurrent shard coordinator plus one per CPU
(capped at 8). A tiny Dataset then runs once, after the imports, so that its block lands on a warm worker.
Later shard tasks reuse these workers, so `timings.shards` in the summary measures the work and
`timings.warmup` the start-up. A failed warm-up costs only its time: shards start their own workers.
"""

from __future__ import annotations

import logging
from typing import Any

import ray

MAX_BLOCK_WORKERS = 8


def _import_everything(transform: str) -> bool:
    """Returns whether this worker was warm already."""
    import sys
    was_warm = "tasks.shard" in sys.modules
    import prefect.task_engine  # noqa: F401 - what a shard task runs in
    import ray.data  # noqa: F401

    import tasks.shard  # noqa: F401
    from tasks.process_block import load_transform
    load_transform(transform)
    return was_warm


def _noop(batch: dict) -> dict:
    return batch


def _first_dataset(*was_warm: bool) -> None:
    if all(was_warm):   # a warm pool has run Datasets before
        return
    from ray.data import DataContext
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = ctx.print_on_execution_start = False
    ray.data.range(1).map_batches(_noop).materialize()


def start_warmup(transform: str, coordinators: int, **remote_options: Any) -> ray.ObjectRef:
    node = ray.get_runtime_context().get_node_id()
    cpus = next((int(n["Resources"].get("CPU", 1)) for n in ray.nodes() if n["NodeID"] == node), 1)
    workers = coordinators + max(1, min(cpus, MAX_BLOCK_WORKERS))
    imports = ray.remote(_import_everything).options(name="rayft-warmup", **remote_options)
    imported = [imports.remote(transform) for _ in range(workers)]   # at once: one worker each
    return ray.remote(_first_dataset).options(name="rayft-warmup", **remote_options).remote(*imported)


def finish_warmup(warming: ray.ObjectRef, logger: logging.Logger | logging.LoggerAdapter) -> None:
    try:
        ray.get(warming, timeout=300)
    except Exception as exc:  # noqa: BLE001 - an optimisation only; the shards will say what is wrong
        logger.warning("warm-up of Ray workers failed (%s: %s); shards start their own", type(exc).__name__, exc)


def cancel_warmup(warming: ray.ObjectRef) -> None:
    ray.cancel(warming, force=False)
