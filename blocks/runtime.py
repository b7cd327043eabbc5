"""The one place where a FaultPolicy becomes Ray DataContext fields, Ray remote args and Prefect task options.

    ctx = apply_to_data_context(policy)      # call BEFORE building the Dataset: Ray copies it at creation
    ds.map_batches(fn, **map_batches_args(policy))
    shard_task.with_options(**shard_task_options(policy))
"""

from __future__ import annotations

import os
from typing import Any

from ray.data import ActorPoolStrategy, DataContext

from blocks.policy import ROW_ACTIONS_FIELDS, FaultPolicy
from tasks.rules import RowRules

_RAY_IO_DEFAULTS = tuple(DataContext.get_current().retried_io_errors)


def io_error_patterns(policy: FaultPolicy) -> list[str]:
    return [*_RAY_IO_DEFAULTS, *policy.retried_io_errors]


def apply_to_data_context(policy: FaultPolicy, ctx: DataContext | None = None) -> DataContext:
    """Set the policy's knobs on the current DataContext (every field, as workers are reused)."""
    ctx = ctx or DataContext.get_current()
    # The job-wide budget (count and fraction) is enforced by the flow over all shards; each shard's
    # Dataset may drop up to the count so that the flow sees every dropped block.
    ctx.max_errored_blocks = policy.max_errored_blocks
    ctx.retried_io_errors = io_error_patterns(policy)
    ctx.max_map_retries = policy.max_map_retries
    ctx.retried_map_errors = list(policy.retried_map_errors) or False
    # Actor-pool retries on application errors take exception classes, never strings.
    ctx.actor_task_retry_on_errors = list(policy.exception_classes()) or False
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    return ctx


def row_rules(policy: FaultPolicy) -> RowRules:
    """What each Ray Data block task needs: row actions, defaults, I/O retry patterns."""
    return RowRules(
        actions=tuple((c, getattr(policy, c)) for c in ROW_ACTIONS_FIELDS),
        default_values=tuple(sorted(policy.default_values.items())),
        io_error_patterns=tuple(io_error_patterns(policy)),
        io_retry_attempts=policy.io_retry_attempts,
        sample_rows=policy.sample_rows,
        faults=tuple((k, v) for k, v in (("transient_rate", policy.inject_transient_rate),
                                          ("kill_once", policy.inject_kill_once),
                                          ("kill_mid_write_once", policy.inject_kill_mid_write_once)) if v),
    )


def map_batches_args(policy: FaultPolicy) -> dict[str, Any]:
    """compute and Ray remote args of the transform's map_batches; retries always bounded."""
    if policy.compute == "actors":
        return {
            "compute": ActorPoolStrategy(size=policy.actor_pool_size),
            "max_restarts": policy.max_restarts,
            "max_task_retries": policy.max_task_retries,
        }
    args: dict[str, Any] = {"max_retries": policy.max_task_retries}
    if policy.retry_exceptions:
        # Ray retries these application errors; anything else fails the task at once. Worker crashes
        # (system errors) are retried up to the same bound.
        args["retry_exceptions"] = list(policy.exception_classes())
    return args


def is_transient(policy: FaultPolicy, exc: BaseException | None) -> bool:
    """A shard failure worth a Prefect retry: a listed exception class, or a Ray worker/actor crash."""
    if exc is None:
        return False
    if isinstance(exc, policy.exception_classes()):
        return True
    from ray.exceptions import ActorDiedError, WorkerCrashedError, RaySystemError
    return isinstance(exc, (ActorDiedError, WorkerCrashedError, RaySystemError)) or getattr(
        exc, "transient", False)


def shard_task_options(policy: FaultPolicy) -> dict[str, Any]:
    def retry_condition(task, task_run, state) -> bool:
        try:
            state.result()
        except BaseException as exc:  # noqa: BLE001 - we classify whatever the shard raised
            return is_transient(policy, exc)
        return False

    return {
        "retries": policy.shard_retries,
        # Exponential backoff capped at 60 s, as a list so the cap is visible in the task's options.
        "retry_delay_seconds": [min(60.0, policy.shard_retry_delay_seconds * 2**i)
                                for i in range(max(policy.shard_retries, 1))],
        "retry_jitter_factor": 0.5,
        "retry_condition_fn": retry_condition,
    }


# Ray options of the shard task itself: a coordinator that needs no CPU of its own (or the Ray Data
# tasks it starts would wait for CPUs it holds), and no Ray retry: Prefect's retries run inside it.
SHARD_REMOTE_OPTIONS = {"num_cpus": 0, "max_retries": 0}


def ray_init_kwargs(policy: FaultPolicy, env: dict[str, str], local: bool) -> dict[str, Any]:
    """ray.init arguments: the driver's Prefect/S3 settings travel to every worker (remote nodes too).

    A private local Ray also keeps more idle workers alive. By default Ray keeps one per CPU and kills
    the others after 1 s idle, so the shard coordinators (num_cpus=0) and the block workers evict each
    other, and each new Dataset pays a cold worker start (about 2.5 s on 2 cores) again."""
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env}} if env else {}
    if local:
        idle_workers = (os.cpu_count() or 1) + policy.max_concurrent_shards + 1
        kwargs.update(include_dashboard=False, log_to_driver=False,
                      _system_config={"num_workers_soft_limit": idle_workers})
    return kwargs
