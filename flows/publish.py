"""Make a completed run's output visible: DEST/data and DEST/quarantine from the committed shards.

Files get names fixed by shard and block and are copied in place atomically, so publishing again (a
resumed run) replaces rather than adds; files of shards no longer in the plan are removed.
"""

from __future__ import annotations

from tasks.storage import copy_atomically, exists, join, list_files, remove_file, split_uri, write_json


def committed_files(report: dict) -> dict[str, str]:
    """Published name -> committed file, for one shard report."""
    out = {}
    for block in report["blocks"]:
        for kind, path in block.get("files", {}).items():
            out[f"{kind}/{report['shard']}-{block['block']:05d}.parquet"] = path
    return out


def files_present(report: dict) -> bool:
    return all(exists(p) for p in committed_files(report).values())


def publish(dest: str, reports: list[dict], flow_run_id: str | None, schema_ipc: bytes | None) -> list[str]:
    wanted: dict[str, str] = {}
    for report in reports:
        wanted.update(committed_files(report))
    for name, path in sorted(wanted.items()):
        copy_atomically(path, join(dest, name))
    for kind in ("data", "quarantine"):
        for path in list_files(join(dest, kind)):
            if f"{kind}/{path.rsplit('/', 1)[-1]}" not in wanted:
                remove_file(path)
    if schema_ipc:   # the planned source types, for replaying text-typed quarantine columns
        fs, path = split_uri(join(dest, "_rayft", "schema.arrow"))
        with fs.open_output_stream(path) as f:
            f.write(schema_ipc)
    write_json(join(dest, "_rayft", "manifest.json"), {"flow_run_id": flow_run_id, "files": sorted(wanted)})
    return sorted(wanted)
