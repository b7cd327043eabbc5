"""The shard task: one Prefect task runs one Ray Data pipeline over the blocks of one shard.

    read+guard+write each block in map_batches  ->  reports of the blocks that finished
    blocks Ray dropped (within max_errored_blocks)  ->  re-read, quarantined as dropped_block
    manifest written last  ->  the shard is committed (a retried shard replaces, never adds)

Its result - the shard report - is persisted by Prefect under a key of shard, input file, transform
source and policy, so a retried flow run or a new run with the same inputs finds it `Cached`.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import sys
import time
import uuid
from collections import Counter

import numpy as np
import pandas as pd
import pyarrow as pa
import ray
from prefect import task
from prefect.context import TaskRunContext
from prefect.runtime import flow_run, task_run

from blocks.policy import FaultPolicy
from blocks.runtime import apply_to_data_context, map_batches_args, row_rules
from tasks.errors import DROPPED_BLOCK
from tasks.process_block import (BlockJob, BlockMapper, load_transform, map_blocks, quarantine_table,
                                 sample_rows)
from tasks.reading import BlockData, ParseReject, read_bytes, read_block
from tasks.storage import (configure_s3, delete_dir, join, list_dirs, list_files, read_json, remove_file, write_json,
                           write_parquet)


class ShardFailed(Exception):
    """A shard's pipeline failed; carries the error recorded by the failing block, whatever its type."""

    def __init__(self, shard: str, message: str, transient: bool = False, errored_blocks: int = 0,
                 retries: int = 0) -> None:
        super().__init__(f"shard {shard}: {message}")
        self.shard, self.transient = shard, transient
        self.errored_blocks, self.retries = errored_blocks, retries   # for the failed run's summary

    def __reduce__(self):
        return (ShardFailed, (self.shard, str(self).split(": ", 1)[1], self.transient, self.errored_blocks,
                              self.retries))


def transform_fingerprint(spec: str) -> str:
    fn = load_transform(spec)
    try:
        source = inspect.getsource(sys.modules[fn.__module__])
    except (OSError, TypeError):
        source = spec
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def shard_key(shard: dict, job: dict) -> str:
    parts = [shard["id"], shard["path"], shard["fingerprint"], json.dumps(shard["blocks"], sort_keys=True),
             job["transform"], job["transform_fingerprint"], job["policy_fingerprint"], job["dest"]]
    return "rayft-" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def cache_key(context: TaskRunContext, parameters: dict) -> str:
    return shard_key(parameters["shard"], parameters["job"])


def _dropped_block(block: dict, job: BlockJob, error: dict | None) -> tuple[dict, pa.Table]:
    """Account for a block Ray dropped: re-read its rows (or at least its lines) as dropped_block."""
    message = (f"{error['error_type']}: {error['message']}" if error else
               "block task failed without a recorded error (worker or actor crash?)")
    try:
        data = read_block(block, job.schema)
        data.rejects = [ParseReject(r.line, r.raw, r.error_type, r.message, DROPPED_BLOCK) for r in data.rejects]
    except Exception:  # noqa: BLE001 - unreadable: keep at least source and line of each line
        raw = read_bytes(block) if block["format"] != "parquet" else b""
        lines = raw.splitlines()
        data = BlockData(pa.table({}), [ParseReject(block["first_line"] + i, l.decode("utf-8", "replace"),
                                                    "Unreadable", "", DROPPED_BLOCK)
                                        for i, l in enumerate(lines) if l.strip()])
    n = data.table.num_rows
    errors = {"_error_class": [DROPPED_BLOCK] * n,
              "_error_type": [error["error_type"] if error else "TaskFailed"] * n,
              "_error_message": [message] * n}
    q = quarantine_table(data, block["path"], np.arange(n), pd.DataFrame(errors),
                         job.schema or data.table.schema, job.text_source)
    rows = n + len(data.rejects)
    return {"block": block["index"], "rows_in": rows, "rows_written": 0, "rows_quarantined": 0,
            "rows_dropped": rows, "rows_filtered": 0, "dropped": True, "error": message,
            "error_classes": [{"values": DROPPED_BLOCK, "counts": rows}] if rows else [],
            "samples": sample_rows(q, job.rules.sample_rows)}, q


@task(name="shard", cache_key_fn=cache_key, persist_result=True, task_run_name="shard-{shard[id]}")
def run_shard(shard: dict, job: dict) -> dict:
    """Process and commit one shard; return its report (the ledger of its blocks)."""
    started = time.time()
    configure_s3(job.get("s3"))
    policy = FaultPolicy.from_json(job["policy_json"])
    key = shard_key(shard, job)
    shard_dir = join(job["dest"], "_rayft", "shards", shard["id"], key[6:22])
    attempt = f"{_run_tag()}-{uuid.uuid4().hex[:8]}"   # this task run's attempts are counted on failure
    block_job = BlockJob(job["transform"], row_rules(policy), job.get("schema_ipc"),
                         join(shard_dir, attempt), shard["format"] != "parquet",
                         join(job["dest"], "_rayft", "faults", str(flow_run.id)), job.get("s3"))
    apply_to_data_context(policy)   # before the Dataset exists: Ray copies the context at creation
    items = [{"block": json.dumps(b)} for b in shard["blocks"]]
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    if policy.compute == "actors":
        ds = ds.map_batches(BlockMapper, batch_size=1, fn_constructor_kwargs={"job": block_job},
                            **map_batches_args(policy))
    else:
        ds = ds.map_batches(map_blocks, batch_size=1, fn_kwargs={"job": block_job}, **map_batches_args(policy))
    try:
        reports = {r["block"]: r for r in (json.loads(row["report"]) for row in ds.take_all())}
    except Exception as exc:
        raise _shard_failure(shard["id"], block_job, policy, exc) from None
    pipeline_done = time.time()
    blocks_out = []
    for block in shard["blocks"]:
        if block["index"] in reports:
            blocks_out.append(reports[block["index"]])
            continue
        name = f"{block['index']:05d}"
        error = read_json(join(block_job.attempt_dir, "errors", f"{name}.json"))
        report, q = _dropped_block(block, block_job, error)
        path = join(block_job.attempt_dir, "quarantine", f"{name}.parquet")
        remove_file(join(block_job.attempt_dir, "data", f"{name}.parquet"))  # nothing of it is kept
        report["files"], report["schemas"] = {}, {}
        if q.num_rows:
            report["schemas"]["quarantine"] = write_parquet(path, q)
            report["files"]["quarantine"] = path
        blocks_out.append(report)
    cap_samples(blocks_out, policy.sample_rows)
    attempts = list_files(join(block_job.attempt_dir, "attempts"))
    add_failed_attempt_circuits(blocks_out, attempts)
    report = {
        "shard": shard["id"], "path": shard["path"], "key": key, "attempt": attempt,
        "task_run_id": str(task_run.id),
        "blocks": blocks_out,
        "errored_blocks": sum(1 for b in blocks_out if b.get("dropped")),
        "block_retries": max(0, len(attempts) - len(shard["blocks"])),
        "shard_retries": max(0, (task_run.run_count or 1) - 1),
    }
    report["seconds"] = {"started": started, "pipeline": round(pipeline_done - started, 3),
                         "total": round(time.time() - started, 3)}
    write_json(join(shard_dir, "COMMITTED.json"), report)   # the commit: one atomic write, last
    for old in list_dirs(shard_dir):
        if not old.endswith("/" + attempt):
            delete_dir(old)
    return report


def cap_samples(blocks: list[dict], per_class: int) -> None:
    """Keep sample_rows samples per class for the whole shard: artifacts show no more than that of the
    whole run, and the flow holds every shard's report (a job can have 100,000 blocks)."""
    seen: Counter = Counter()
    for block in blocks:
        kept = []
        for row in block.get("samples", []):
            if seen[row["_error_class"]] < per_class:
                seen[row["_error_class"]] += 1
                kept.append(row)
        block["samples"] = kept


def add_failed_attempt_circuits(blocks: list[dict], attempt_files: list[str]) -> None:
    """A breaker trips on an attempt that fails; Ray's retry that succeeds reports only its own calls.
    Failed attempts left their breakers in their attempt file (`<block>-<id>.json`): read those of the
    blocks that were retried or dropped (none when nothing failed) and add them up."""
    by_block: dict[int, list[str]] = {}
    for path in attempt_files:
        by_block.setdefault(_attempt_block(path), []).append(path)
    for block in blocks:
        files = by_block.get(block["block"], [])
        if len(files) < 2 and not block.get("dropped"):
            continue
        merged = {name: dict(c) for name, c in block.get("circuits", {}).items()}
        for path in files:
            for name, c in ((read_json(path) or {}).get("circuits") or {}).items():
                total = merged.setdefault(name, {"state": c["state"], "trips": 0, "rejected": 0})
                total["trips"] += c["trips"]
                total["rejected"] += c["rejected"]
        if merged:
            block["circuits"] = merged


def _attempt_block(path: str) -> int:
    """The block of an attempt file, `<block>-<id>.json` (tasks.process_block)."""
    return int(path.rsplit("/", 1)[-1].split("-", 1)[0])


def _run_tag() -> str:
    return (str(task_run.id) if task_run.id else "norun")[:8]


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _shard_failure(shard_id: str, job: BlockJob, policy: FaultPolicy, exc: BaseException) -> BaseException:
    """Turn what Ray raised into an error naming the block's own exception, even one that could not be
    unpickled here. The block recorded its exception's classes before failing: `transient` (retried by
    Prefect) if one of them is in retry_exceptions, or if a worker or actor crashed."""
    from ray.exceptions import ActorDiedError, WorkerCrashedError
    recorded = [r for r in (read_json(f) for f in list_files(join(job.attempt_dir, "errors"))) if r]
    crash = isinstance(exc, (ActorDiedError, WorkerCrashedError)) or any(
        name in str(exc) for name in ("WorkerCrashedError", "ActorDiedError"))
    # Block re-attempts of every attempt folder of this task run (Prefect's shard retries make a new
    # one each), plus the shard retries themselves.
    shard_dir = job.attempt_dir.rsplit("/", 1)[0]
    retries = max(0, (task_run.run_count or 1) - 1)
    for folder in list_dirs(shard_dir):
        if folder.rsplit("/", 1)[-1].startswith(_run_tag() + "-"):
            blocks = [_attempt_block(p) for p in list_files(join(folder, "attempts"))]
            retries += len(blocks) - len(set(blocks))
    if not recorded:
        return ShardFailed(shard_id, f"{type(exc).__name__}: {str(exc)[:500]}", crash, 0, retries)
    last = recorded[-1]
    listed = {_qualified(c) for c in policy.exception_classes()}
    transient = crash or bool(listed & set(last.get("classes", [])))
    return ShardFailed(shard_id, f"block {last['block']}: {last['error_type']}: {last['message']}", transient,
                       1, retries)   # the block that failed the shard; the shard stopped there
