"""Replay: re-run DEST's quarantined rows through a (fixed) transform.

    rayft replay DEST --transform my_transforms:fixed

Rows that now pass are written to DEST/data as `replay-<quarantine file>-<content hash>.parquet` and leave
quarantine; rows that still fail stay with their new error; rows that never parsed (`_raw`) stay as they
are. The names come from the quarantine file's content, and each quarantine file is replaced atomically
after its rows are written, so a repeated or interrupted replay writes each row once. The summary's
ledger is updated and the replay's flow run links to the run that quarantined the rows.

Replay runs on the driver (quarantine is small next to the input), with the same guard as the main job.
A later `rayft run` into the same DEST publishes again from its checkpoints, which undoes replays.
"""

from __future__ import annotations

import hashlib
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.runtime import flow_run

from blocks.policy import FaultPolicy
from blocks.runtime import row_rules
from flows.publish import fit_published
from flows.summary import LEDGER
from tasks.errors import ERROR_COLUMNS, DROPPED_BLOCK
from tasks.guard import guard
from tasks.process_block import load_transform
from tasks.reading import cast_cells
from tasks.storage import (join, list_files, read_json, read_parquet, schema_from_text, split_uri, write_json,
                           write_parquet, write_parquet_atomically)

ERROR_NAMES = ERROR_COLUMNS.names


class NothingToReplay(ValueError):
    pass


def _read_schema(dest: str) -> pa.Schema | None:
    fs, path = split_uri(join(dest, "_rayft", "schema.arrow"))
    try:
        with fs.open_input_stream(path) as f:
            return pa.ipc.read_schema(pa.BufferReader(f.read()))
    except FileNotFoundError:
        return None


@task(name="replay-file")
def replay_file(path: str, dest: str, transform: str, policy_json: str, schema_ipc: bytes | None,
                data_schema: str | None = None) -> dict:
    fs, local = split_uri(path)
    with fs.open_input_file(local) as f:
        content = f.read()
    digest = hashlib.sha256(content).hexdigest()[:12]
    table = pq.read_table(pa.BufferReader(content))
    stem = path.rsplit("/", 1)[-1].removesuffix(".parquet").split("~")[0]
    errors = table.select(ERROR_NAMES)
    source = table.drop_columns(ERROR_NAMES)
    replayable = pc_is_null(table["_raw"])
    positions = np.flatnonzero(replayable)
    schema = pa.ipc.read_schema(pa.BufferReader(schema_ipc)) if schema_ipc else None
    candidates = source.take(pa.array(positions, pa.int64()))
    bad_cells: dict[int, str] = {}
    if schema is not None:   # text sources kept the columns as text: back to the planned types
        candidates, bad_cells = cast_cells(candidates, schema)
        positions = np.delete(positions, sorted(bad_cells))
    policy = FaultPolicy.from_json(policy_json)
    result = guard(load_transform(transform), candidates.to_pandas(), row_rules(policy))
    passed = positions[result.written.index.to_numpy()] if len(result.written) else np.array([], dtype=np.int64)
    if len(result.written):
        written = pa.Table.from_pandas(result.written, preserve_index=False)
        if data_schema:   # DEST/data keeps one schema (flows.publish)
            written = fit_published(written, schema_from_text(data_schema))
        write_parquet(join(dest, "data", f"replay-{stem}-{digest}.parquet"), written)
    # What stays: everything not written or filtered, with the new error where the transform gave one.
    moved = set(int(p) for p in passed)
    filtered = set(int(p) for p in positions) - moved - set(int(positions[i]) for i in result.quarantined.index)
    new_errors = {int(positions[i]): row for i, row in result.quarantined[
        ["_error_class", "_error_type", "_error_message"]].iterrows()}
    keep = [i for i in range(table.num_rows) if i not in moved and i not in filtered]
    remaining = table.take(pa.array(keep, pa.int64())).to_pandas()
    for j, i in enumerate(keep):
        if i in new_errors:
            for column in ("_error_class", "_error_type", "_error_message"):
                remaining.iat[j, remaining.columns.get_loc(column)] = new_errors[i][column]
    classes_before = errors["_error_class"].to_pylist()
    out = join(dest, "quarantine", path.rsplit("/", 1)[-1])
    if keep:
        write_parquet_atomically(out, pa.Table.from_pandas(remaining, schema=table.schema, preserve_index=False))
    else:
        fs.delete_file(local)
    return {"file": path, "moved": len(moved), "filtered": len(filtered), "remaining": len(keep),
            "moved_dropped": sum(1 for i in moved | filtered if classes_before[i] == DROPPED_BLOCK),
            "still_failing": len(new_errors)}


def pc_is_null(column: pa.ChunkedArray) -> np.ndarray:
    return column.is_null().to_numpy(zero_copy_only=False)


def replayable(dest: str) -> tuple[dict, list[str]]:
    """The last completed run's summary and its quarantine files, or NothingToReplay."""
    summary = read_json(join(dest, "_rayft", "summary.json"))
    files = [f for f in list_files(join(dest, "quarantine")) if f.endswith(".parquet")]
    if summary is None or summary.get("status") != "completed" or not files:
        raise NothingToReplay(f"nothing to replay at {dest}: no completed run with quarantined rows")
    return summary, files


@flow(name="rayft-replay", log_prints=True)
def replay_flow(dest: str, transform: str, policy: str | None = None) -> dict:
    from blocks.policy import load_policy
    from flows.pipeline import normalize
    logger = get_run_logger()
    dest = normalize(dest)
    summary, files = replayable(dest)
    schema = _read_schema(dest)
    pol = load_policy(policy)
    data_schema = (read_json(join(dest, "_rayft", "manifest.json")) or {}).get("schemas", {}).get("data")
    results = [replay_file(f, dest, transform, pol.to_json(),
                           schema.serialize().to_pybytes() if schema is not None else None, data_schema)
               for f in files]
    moved = sum(r["moved"] for r in results)
    filtered = sum(r["filtered"] for r in results)
    from_dropped = sum(r["moved_dropped"] for r in results)
    summary["rows_written"] += moved
    summary["rows_filtered"] = summary.get("rows_filtered", 0) + filtered
    summary["rows_dropped"] -= from_dropped
    summary["rows_quarantined"] -= moved + filtered - from_dropped
    classes = pa.concat_tables([read_parquet(f, columns=["_error_class"])
                                for f in list_files(join(dest, "quarantine")) if f.endswith(".parquet")]
                               or [pa.table({"_error_class": pa.array([], pa.string())})])
    summary["error_classes"] = dict(sorted(pd.Series(classes["_error_class"].to_pylist(),
                                                     dtype=object).value_counts().items()))
    summary["error_rate"] = round(summary["rows_quarantined"] / summary["rows_in"], 6) if summary["rows_in"] else 0
    origin = summary.get("replayed_from") or summary["flow_run_id"]
    replay = {"flow_run_id": str(flow_run.id), "transform": transform, "rows_moved": moved,
              "rows_filtered": filtered, "rows_still_quarantined": summary["rows_quarantined"]}
    summary["replays"] = [*summary.get("replays", []), replay]
    summary["replayed_from"] = origin
    summary["message"] = f"replay with {transform}: {moved} rows moved to data, {summary['rows_quarantined']} still quarantined"
    assert sum(summary[k] for k in LEDGER[1:]) == summary["rows_in"], "ledger does not balance after replay"
    write_json(join(dest, "_rayft", "summary.json"), summary)
    from prefect.settings import PREFECT_UI_URL
    ui = PREFECT_UI_URL.value()
    if ui:
        create_link_artifact(key="rayft-replayed-run", link=f"{ui}/runs/flow-run/{origin}",
                             link_text=f"run that quarantined the rows ({origin})")
    create_markdown_artifact(key="rayft-replay", markdown=(
        f"# Replay of quarantined rows\n\nOriginal run: `{origin}`\n\nTransform: `{transform}`\n\n"
        f"| rows moved to data | filtered | still quarantined |\n|---:|---:|---:|\n"
        f"| {moved} | {filtered} | {summary['rows_quarantined']} |\n"))
    logger.info(summary["message"])
    return summary


def replay(dest: str, transform: str, as_json: bool) -> int:
    """`rayft replay`: exit 0 replayed, 1 the replay failed, 2 nothing to replay or a bad transform."""
    from flows.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError, _check_transform, _print_summary, _stdout_to_stderr
    from flows.pipeline import normalize
    from flows.prefect_api import prefect_api
    try:
        _check_transform(transform)
        replayable(normalize(dest))
    except (UsageError, NothingToReplay) as exc:
        print(f"rayft: {exc}", file=sys.stderr)
        return EXIT_USAGE
    with _stdout_to_stderr(as_json), prefect_api():
        state = replay_flow(dest=dest, transform=transform, return_state=True)
    if not state.is_completed():
        try:
            state.result()
        except NothingToReplay as exc:
            print(f"rayft: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except Exception as exc:  # noqa: BLE001
            print(f"rayft: replay failed: {exc}", file=sys.stderr)
            return EXIT_FAILED
    _print_summary(state.result(), as_json)
    return EXIT_OK
