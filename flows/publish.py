"""Make a completed run's output visible: DEST/data and DEST/quarantine from the committed shards.

Files get names fixed by shard and block and are copied in place atomically, so publishing again (a
resumed run) replaces rather than adds; files of shards no longer in the plan are removed.

All files of one kind share one schema, so that DEST/data reads back as one table. A transform's output
dtypes can differ between batches (an int column that meets a NaN becomes float, an all-None column has
no type), and so can its columns. The schemas the blocks recorded are unified with Arrow's permissive
promotion (int64 + double -> double, null + string -> string, missing columns -> null), and only the
files that differ are rewritten. Columns whose types cannot be unified (int64 in one block, string in
another) fail the job before anything is published.
"""

from __future__ import annotations

import pyarrow as pa

from tasks.storage import (copy_atomically, exists, join, list_files, read_parquet, read_parquet_schema,
                           remove_file, schema_from_text, schema_text, split_uri, write_json,
                           write_parquet_atomically)


class SchemaConflict(ValueError):
    """Output columns whose types differ between blocks beyond what Arrow can promote."""


def committed_files(report: dict) -> dict[str, tuple[str, str | None]]:
    """Published name -> (committed file, its recorded schema_text or None), for one shard report."""
    out = {}
    for block in report["blocks"]:
        for kind, path in block.get("files", {}).items():
            out[f"{kind}/{report['shard']}-{block['block']:05d}.parquet"] = (path, block.get("schemas", {}).get(kind))
    return out


def files_present(report: dict) -> bool:
    return all(exists(path) for path, _ in committed_files(report).values())


def unified_schemas(files: dict[str, tuple[str, str]]) -> dict[str, pa.Schema]:
    """Kind ("data", "quarantine") -> the one schema of its files, from their schema texts. Raises
    SchemaConflict."""
    distinct: dict[str, dict[str, None]] = {}
    for name, (_, text) in sorted(files.items()):   # plan order: the same column order every run
        distinct.setdefault(name.split("/", 1)[0], {})[text] = None
    out = {}
    for kind, texts in distinct.items():
        schemas = [schema_from_text(t) for t in texts]
        try:
            out[kind] = pa.unify_schemas(schemas, promote_options="permissive")
        except (pa.ArrowTypeError, pa.ArrowInvalid) as exc:
            raise SchemaConflict(f"the {kind} files of this run cannot share one schema: {exc}. Make the "
                                 "transform return the same dtype for a column in every batch") from None
    return out


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """table with exactly schema's columns, in its order: promoted types, nulls for missing columns."""
    columns = [table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
               for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def fit_published(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Rows added to published files later (replay), conformed to the published schema with Arrow's safe
    casts. Columns it lacks, or values that do not fit it, are a SchemaConflict."""
    extra = [name for name in table.column_names if name not in schema.names]
    if extra:
        raise SchemaConflict(f"columns {extra} are not in the published schema of DEST/data")
    try:
        return conform(table, schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise SchemaConflict(f"rows do not fit the published schema of DEST/data: {exc}") from None


def publish(dest: str, reports: list[dict], flow_run_id: str | None, schema_ipc: bytes | None) -> list[str]:
    wanted: dict[str, tuple[str, str]] = {}
    for report in reports:
        for name, (path, text) in committed_files(report).items():
            # A report of an older version recorded no schema: read it from the file's footer, once.
            wanted[name] = (path, text or schema_text(read_parquet_schema(path)))
    schemas = unified_schemas(wanted)   # before anything is copied: a conflict publishes nothing
    texts = {kind: schema_text(schema) for kind, schema in schemas.items()}
    for name, (path, text) in sorted(wanted.items()):
        kind = name.split("/", 1)[0]
        if text == texts[kind]:
            copy_atomically(path, join(dest, name))
        else:
            write_parquet_atomically(join(dest, name), conform(read_parquet(path), schemas[kind]))
    for kind in ("data", "quarantine"):
        for path in list_files(join(dest, kind)):
            if f"{kind}/{path.rsplit('/', 1)[-1]}" not in wanted:
                remove_file(path)
    if schema_ipc:   # the planned source types, for replaying text-typed quarantine columns
        fs, path = split_uri(join(dest, "_rayft", "schema.arrow"))
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)   # a run without shards has no _rayft yet
        with fs.open_output_stream(path) as f:
            f.write(schema_ipc)
    write_json(join(dest, "_rayft", "manifest.json"), {"flow_run_id": flow_run_id, "files": sorted(wanted),
                                                       "schemas": texts})
    return sorted(wanted)
