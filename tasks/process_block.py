"""The work of one Ray Data block: read it, run the guarded transform, write its data and quarantine.

Runs inside a Ray Data map task (or actor). Everything it writes goes under the shard's attempt folder
with names fixed by the block number, so a Ray retry of the block overwrites instead of adding.
"""

from __future__ import annotations

import importlib
import inspect
import json
import traceback
import uuid
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tasks import circuit, faults
from tasks.errors import ERROR_COLUMNS, describe
from tasks.guard import guard
from tasks.reading import BlockData, read_block
from tasks.rules import RowRules
from tasks.storage import configure_s3, join, with_io_retries, write_json, write_parquet


def load_transform(spec: str):
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"a transform is MODULE:FUNCTION, not {spec!r}")
    fn = getattr(importlib.import_module(module), name, None)
    if not callable(fn):
        raise ValueError(f"{spec}: no function {name!r} in module {module!r}")
    try:
        inspect.signature(fn).bind(None)
    except TypeError:   # else every call raises TypeError, classified data_quality: all rows quarantined
        raise ValueError(f"{spec}: a transform takes one argument, a pandas DataFrame") from None
    except ValueError:   # no signature to inspect (a builtin): nothing to check
        pass
    return fn


@dataclass(frozen=True)
class BlockJob:
    """What every block of one shard attempt needs; small and picklable."""
    transform: str
    rules: RowRules
    schema_ipc: bytes | None     # planned source schema (pyarrow IPC), None for Parquet sources
    attempt_dir: str             # DEST/_rayft/shards/<shard>/<key>/<attempt>
    text_source: bool            # quarantine keeps text-file columns as strings
    fault_dir: str = ""          # markers of injected faults, one folder per flow run
    s3: tuple | None = field(default=None, repr=False)   # S3Credentials options; never printed

    @property
    def schema(self) -> pa.Schema | None:
        return _schema(self.schema_ipc)


@lru_cache(maxsize=8)
def _schema(ipc: bytes | None) -> pa.Schema | None:
    return pa.ipc.read_schema(pa.BufferReader(ipc)) if ipc else None


def _as_text(table: pa.Table) -> pa.Table:
    return pa.table({n: pc.cast(table[n], pa.string()) if not pa.types.is_string(table[n].type)
                     else table[n] for n in table.column_names})


def quarantine_table(data: BlockData, source: str, rows: np.ndarray, errors: pd.DataFrame,
                     source_schema: pa.Schema, as_text: bool) -> pa.Table:
    """Source columns of the quarantined rows + the error record columns, parse rejects included."""
    taken = data.table.take(pa.array(rows, pa.int64()))
    if as_text:
        taken = _as_text(taken)
    n_rejects = len(data.rejects)
    columns = {}
    # The planned columns, then any this file has beyond them (publish gives all files one schema).
    fields = list(source_schema) + [f for f in data.table.schema if f.name not in source_schema.names]
    for field in fields:
        typ = pa.string() if as_text else field.type
        col = (taken[field.name].combine_chunks() if field.name in taken.column_names
               else pa.nulls(len(rows), typ))
        columns[field.name] = pa.concat_arrays([col.cast(typ), pa.nulls(n_rejects, typ)])
    r = data.rejects
    errors_cols = {
        "_error_class": list(errors["_error_class"]) + [x.error_class for x in r],
        "_error_type": list(errors["_error_type"]) + [x.error_type for x in r],
        "_error_message": list(errors["_error_message"]) + [x.message for x in r],
        "_source": [source] * (len(rows) + n_rejects),
        "_line": list(data.line_of(rows)) + [x.line if x.line is not None else -1 for x in r],
        "_raw": [None] * len(rows) + [x.raw for x in r],
    }
    for field in ERROR_COLUMNS:
        columns[field.name] = pa.array(errors_cols[field.name], field.type)
    return pa.table(columns)


def process_block(block: dict, job: BlockJob) -> dict:
    """Read, guard, write one block; return its report. System errors are recorded, then re-raised."""
    rules = job.rules
    configure_s3(job.s3)
    name = f"{block['index']:05d}"
    attempt_file = join(job.attempt_dir, "attempts", f"{name}-{uuid.uuid4().hex[:8]}.json")
    write_json(attempt_file, {})
    breakers = circuit.snapshot()
    try:
        faults.inject(rules.faults, job.fault_dir)
        data = with_io_retries(list(rules.io_error_patterns), rules.io_retry_attempts,
                               lambda: read_block(block, job.schema))
        df = data.table.to_pandas()
        result = guard(load_transform(job.transform), df, rules)
        report = {"block": block["index"], "rows_in": data.table.num_rows + len(data.rejects),
                  "rows_written": len(result.written), "rows_filtered": result.filtered,
                  "rows_quarantined": len(result.quarantined) + len(data.rejects),
                  "rows_flagged": int(result.written["_flag_class"].notna().sum()) if rules.flags_rows() else 0,
                  "rows_defaulted": result.defaulted,
                  "files": {},
                  "schemas": {}}   # kind -> schema_text of the file written: publish unifies them
        tripped = circuit.delta(breakers, circuit.snapshot())
        if tripped:
            report["circuits"] = tripped
        if len(result.written):
            path = join(job.attempt_dir, "data", f"{name}.parquet")
            table = pa.Table.from_pandas(result.written, preserve_index=False)
            faults.write_or_die(rules.faults, job.fault_dir, path, b"PAR1" + b"\0" * 4096)
            report["schemas"]["data"] = write_parquet(path, table)
            report["files"]["data"] = path
        if report["rows_quarantined"]:
            rows = result.quarantined.index.to_numpy()
            errors = result.quarantined[["_error_class", "_error_type", "_error_message"]]
            q = quarantine_table(data, block["path"], rows, errors, job.schema or data.table.schema,
                                 job.text_source)
            path = join(job.attempt_dir, "quarantine", f"{name}.parquet")
            report["schemas"]["quarantine"] = write_parquet(path, q)
            report["files"]["quarantine"] = path
            report["error_classes"] = pc.value_counts(q["_error_class"]).to_pylist()
            report["samples"] = sample_rows(q, rules.sample_rows)
        return report
    except Exception as exc:
        error_type, message = describe(exc)
        write_json(join(job.attempt_dir, "errors", f"{name}.json"), {
            "block": block["index"], "error_type": error_type, "message": message,
            "classes": [f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__],
            "traceback": traceback.format_exc()[-4000:]})
        tripped = circuit.delta(breakers, circuit.snapshot())
        if tripped:   # a breaker trips on the attempt that fails: the shard adds this to the block's report
            write_json(attempt_file, {"circuits": tripped})
        raise


def sample_rows(q: pa.Table, per_class: int) -> list[dict]:
    """A few quarantined rows per error class, for artifacts (values cut to 200 characters)."""
    out: list[dict] = []
    if not per_class:
        return out
    classes = q["_error_class"].to_pylist()
    seen: dict[str, int] = {}
    for i, cls in enumerate(classes):
        if seen.get(cls, 0) < per_class:
            seen[cls] = seen.get(cls, 0) + 1
            out.append({k: (str(v)[:200] if v is not None else None)
                        for k, v in q.slice(i, 1).to_pylist()[0].items()})
    return out


def map_blocks(batch: dict, job: BlockJob) -> dict:
    """map_batches function (task pool): one block descriptor in, one report out."""
    reports = [json.dumps(process_block(json.loads(b), job)) for b in batch["block"]]
    return {"report": np.array(reports, dtype=object)}


class BlockMapper:
    """map_batches callable class (actor pool): the same work, transform loaded once per actor."""

    def __init__(self, job: BlockJob) -> None:
        self.job = job
        load_transform(job.transform)

    def __call__(self, batch: dict) -> dict:
        return map_blocks(batch, self.job)
