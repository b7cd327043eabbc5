"""The main flow: plan shards, run one shard task per shard on Ray, account, publish, leave artifacts.

    from flows import etl
    etl(source="in/*.csv", dest="out", transform="tasks.examples:transactions", policy="policy.toml")
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
from prefect import flow, get_run_logger
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.runtime import flow_run
from prefect_ray import RayTaskRunner
from prefect_ray.context import remote_options

from blocks.policy import FaultPolicy, PolicyError, load_policy
from blocks.runtime import SHARD_REMOTE_OPTIONS, ray_init_kwargs, shard_task_options
from flows.artifacts import Progress, publish_run_artifacts
from flows.interrupts import interrupted
from flows.planning import Plan, plan_job
from flows.publish import SchemaConflict, files_present, publish
from flows.summary import failure_reason, summarize
from tasks.shard import run_shard, shard_key, transform_fingerprint
from tasks.storage import configure_s3, join, write_json
from tasks.warmup import cancel_warmup, finish_warmup, start_warmup

DEFAULT_TRANSFORM = "tasks.examples:passthrough"
RESOLVE_THREADS = 8
PASSED_ENV = ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_API_AUTH_STRING", "AWS_ACCESS_KEY_ID",
              "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL",
              "RAYFT_FAULTS")


class JobFailed(Exception):
    """The job ran and failed a check; its failure state is persisted (CLI exit code 1)."""


def task_runner(policy: FaultPolicy) -> RayTaskRunner:
    """RayTaskRunner for the policy's Ray address; workers get the Prefect API and S3 settings."""
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    address = policy.ray_address or os.environ.get("RAYFT_RAY_ADDRESS") or "local"   # "" = local
    return RayTaskRunner(address=address, init_kwargs=ray_init_kwargs(policy, env, address == "local"))


def check_ray_address(policy: FaultPolicy) -> None:
    """The task runner is chosen before the flow reads its policy: a policy's ray_address that this run's
    runner does not use is an error, not a silent run on a private local Ray."""
    from prefect.context import FlowRunContext
    context = FlowRunContext.get()
    runner_address = getattr(context.task_runner, "address", None) if context else None
    if policy.ray_address and policy.ray_address != runner_address:
        raise PolicyError(
            f"the policy sets ray_address={policy.ray_address!r}, but this flow run's Ray is "
            f"{runner_address!r}. `rayft run` applies the policy's address; for a deployment set "
            f"RAYFT_RAY_ADDRESS={policy.ray_address} in its job variables (deployments/prefect.yaml).")


def normalize(location: str) -> str:
    return location if "://" in location else str(Path(location).expanduser().resolve())


def _schema_ipc(schema: pa.Schema | None) -> bytes | None:
    return schema.serialize().to_pybytes() if schema is not None else None


def resume_hint(source: str, dest: str, transform: str, policy: str | None) -> str:
    if policy and Path(policy).is_file():
        policy = str(Path(policy).resolve())   # the hint must work from any folder
    return f"rayft run {source} {dest} --transform {transform}" + (f" --policy {policy}" if policy else "")


def coordinator_options() -> dict:
    """Ray options of shard coordinators (and their warm-up). They are light: keep them on the driver's
    node (soft), so that losing a worker node costs only Ray retries of its block tasks, never a
    coordinator with its Prefect retry loop."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    return {**SHARD_REMOTE_OPTIONS, "scheduling_strategy": NodeAffinitySchedulingStrategy(
        node_id=ray.get_runtime_context().get_node_id(), soft=True)}


def _shard_task(policy: FaultPolicy, result_dir: Path | None):
    options = shard_task_options(policy)
    if result_dir is not None:
        options["result_storage"] = result_dir   # results live and die with DEST
    return run_shard.with_options(**options)


def _persisted(shard: dict, job: dict, result_dir: Path | None) -> bool:
    return result_dir is not None and (result_dir / shard_key(shard, job)).exists()


def _resolve_committed(shards: list[dict], job: dict, shard_task, progress: Progress):
    """Shards whose result Prefect persisted before, resolved by Prefect's cache in threads of the flow's
    process: state Cached, no Ray worker. With 8 threads a shard costs about 7 ms instead of 60 ms one
    after another, so a resume of 10,000 committed shards starts in about a minute, not ten.
    Returns (reports, shards that must run after all)."""
    reports, rerun = [], []
    with ThreadPoolTaskRunner(max_workers=RESOLVE_THREADS) as runner:
        futures = [(shard, runner.submit(shard_task, parameters={"shard": shard, "job": job})) for shard in shards]
        for shard, future in futures:
            future.wait()
            report = future.state.result(raise_on_failure=False) if future.state.is_completed() else None
            if report and report["task_run_id"] != str(future.task_run_id) and files_present(report):
                reports.append(report)
            else:
                rerun.append(shard)
    progress.advance(len(reports))
    return reports, rerun


def _run_pending(pending: list[dict], job: dict, policy: FaultPolicy, shard_task, progress: Progress,
                 reports: list[dict]):
    """Submit shard tasks, at most max_concurrent_shards at a time; add their reports to `reports` as they
    come (an interrupted run's summary counts them); return cached, failures."""
    logger = get_run_logger()
    failed, cached_count, lost = {}, 0, Counter()
    pending, running = list(pending), {}
    with remote_options(**coordinator_options()):
        while pending or running:
            while pending and len(running) < policy.max_concurrent_shards:
                shard = pending.pop(0)
                running[shard_task.submit(shard, job)] = shard
            future = next(as_completed(list(running)))
            shard = running.pop(future)
            try:
                report = future.result()
            except Exception as exc:  # noqa: BLE001 - recorded in the failure state
                failed[shard["id"]] = f"{type(exc).__name__}: {exc}"[:1000]
                lost["errored_blocks"] += getattr(exc, "errored_blocks", 0)
                lost["retries"] += getattr(exc, "retries", 0)
                logger.error("shard %s failed: %s", shard["id"], failed[shard["id"]])
                continue
            # A result made by another task run is Prefect's cache: the shard was committed before.
            cached = report["task_run_id"] != str(future.task_run_id)
            if cached and not files_present(report):
                logger.warning("shard %s: cached result without its files; recomputing", shard["id"])
                running[shard_task.with_options(refresh_cache=True).submit(shard, job)] = shard
                continue
            cached_count += cached
            reports.append(report)
            progress.advance()
    return cached_count, failed, lost


def s3_options(policy: FaultPolicy):
    if not policy.s3_credentials:
        return None
    from blocks.s3 import S3Credentials
    return S3Credentials.load(policy.s3_credentials).options()


def emit_alerts(summary: dict, policy: FaultPolicy, dest: str) -> list[str]:
    """Prefect events for automations: error rate past the warning level, circuit breakers tripped."""
    from prefect.events import emit_event
    resource = {"prefect.resource.id": f"rayft.dest.{dest}", "prefect.resource.name": dest}
    figures = {k: summary[k] for k in ("rows_in", "rows_quarantined", "error_rate", "flow_run_id")}
    emitted = []
    if summary["error_rate"] > min(policy.warn_error_rate, policy.max_error_rate):
        emit_event(event="rayft.error-rate.warning", resource=resource, payload={
            **figures, "warn_error_rate": policy.warn_error_rate, "max_error_rate": policy.max_error_rate})
        emitted.append("rayft.error-rate.warning")
    for name, breaker in summary.get("circuit_breakers", {}).items():
        if breaker["trips"]:
            emit_event(event="rayft.circuit.tripped", resource=resource, payload={**figures, "circuit": name,
                                                                                   **breaker})
            emitted.append("rayft.circuit.tripped")
    summary["events"] = emitted
    return emitted


@flow(name="rayft-etl", task_runner=task_runner(FaultPolicy()), log_prints=True)
def etl(source: str, dest: str, transform: str = DEFAULT_TRANSFORM, policy: str | None = None) -> dict:
    """Run TRANSFORM over SOURCE into DEST with row-, retry-, block- and job-level fault tolerance."""
    logger = get_run_logger()
    started = time.monotonic()
    pol = load_policy(policy)
    check_ray_address(pol)
    source, dest = normalize(source), normalize(dest)
    hint = resume_hint(source, dest, transform, policy)
    seen: dict = {}
    try:
        return _run_job(source, dest, transform, pol, hint, started, logger, seen)
    except JobFailed:
        raise
    except (Exception, KeyboardInterrupt) as exc:   # unreadable input, I/O error, Ctrl-C: leave the failure state
        message = ("interrupted (Ctrl-C); committed shards are kept"
                   if interrupted() or isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}")
        reports = seen.get("reports", [])   # the shards committed before it stopped
        summary = summarize(reports, seen.get("shards_total", 0), 0, {}, seen.get("blocks_total", 0))
        summary.update(status="failed", flow_run_id=str(flow_run.id) if flow_run.id else None,
                       message=message[:1000])
        write_json(join(dest, "_rayft", "summary.json"), summary)
        publish_run_artifacts(summary, reports, pol, dest, hint)
        raise


def _run_job(source: str, dest: str, transform: str, pol: FaultPolicy, hint: str, started: float,
             logger, seen: dict) -> dict:
    s3 = s3_options(pol)
    configure_s3(s3)
    warming = start_warmup(transform, pol.max_concurrent_shards, **coordinator_options())
    plan = plan_job(source, pol)
    logger.info("planned %d shards, %d blocks over %d files", len(plan.shards), plan.blocks_total, len(plan.files))
    job = {"transform": transform, "transform_fingerprint": transform_fingerprint(transform),
           "policy_json": pol.to_json(), "policy_fingerprint": pol.fingerprint(), "dest": dest,
           "schema_ipc": _schema_ipc(plan.schema if plan.files[0]["format"] != "parquet" else None),
           "s3": s3}
    result_dir = Path(dest) / "_rayft" / "results" if "://" not in dest else None
    shard_task = _shard_task(pol, result_dir)
    progress = Progress(len(plan.shards))
    seen.update(shards_total=len(plan.shards), blocks_total=plan.blocks_total)
    planned = time.monotonic()
    persisted = [shard for shard in plan.shards if _persisted(shard, job, result_dir)]
    # Wait for the warm-up before resolving committed shards (on 2 cores they would slow each other),
    # unless every shard was committed before: then no worker is needed.
    if len(persisted) == len(plan.shards):
        cancel_warmup(warming)
    else:
        finish_warmup(warming, logger)
    warmed = time.monotonic()
    reports, rerun = _resolve_committed(persisted, job, shard_task, progress)
    seen["reports"] = reports
    resolved = {shard["id"] for shard in persisted} - {shard["id"] for shard in rerun}
    pending = [shard for shard in plan.shards if shard["id"] not in resolved]
    cached, failed, lost = _run_pending(pending, job, pol, shard_task, progress, reports)
    shards_done = time.monotonic()
    summary = summarize(reports, len(plan.shards), len(plan.shards) - len(pending) + cached, failed,
                        plan.blocks_total)
    for key in ("errored_blocks", "retries"):   # failed shards have no report: add what they did
        summary[key] += lost[key]
    summary["flow_run_id"] = str(flow_run.id) if flow_run.id else None
    summary["seconds"] = round(time.monotonic() - started, 3)
    # warmup: the wait for warm Ray workers after planning (fixed start-up, overlapped with planning);
    # shards: resolving committed shards plus running the others: the work and what a resume costs.
    summary["timings"] = {"plan": round(planned - started, 3), "warmup": round(warmed - planned, 3),
                          "shards": round(shards_done - warmed, 3)}
    reason = failure_reason(summary, pol)
    if not reason:
        try:
            published = publish(dest, reports, summary["flow_run_id"], job["schema_ipc"])
        except SchemaConflict as exc:   # found before any file is published
            reason = str(exc)
    if reason:
        summary.update(status="failed", message=reason)
    else:
        summary["message"] = (f"{summary['rows_written']:,} rows written, {summary['rows_quarantined']:,} "
                              f"quarantined, {summary['rows_dropped']:,} dropped; {len(published)} files published")
    emit_alerts(summary, pol, dest)
    summary["timings"]["publish"] = round(time.monotonic() - shards_done, 3)
    write_json(join(dest, "_rayft", "summary.json"), summary)
    publish_run_artifacts(summary, reports, pol, dest, hint)
    logger.info("%s: %s", summary["status"], summary["message"])
    if reason:
        raise JobFailed(reason)
    return summary
