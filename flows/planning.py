"""Plan a job: list the source files, infer the source schema, cut files into shards and blocks.

Plans are deterministic: the same files give the same shard ids and byte ranges, which is what lets a
later run find the shards an earlier one committed. Uncompressed CSV / JSON-lines files are cut at line
boundaries (so a quoted value must not contain a newline); compressed files are one block each; Parquet
files are cut by row groups.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.json as pajson
import pyarrow.parquet as pq

from blocks.policy import FaultPolicy
from tasks.errors import ERROR_COLUMNS
from tasks.reading import drop_invalid_utf8, jsonl_valid_lines
from blocks.runtime import io_error_patterns
from tasks.storage import split_uri, with_io_retries

SUFFIXES = {".csv": "csv", ".csv.gz": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
            ".jsonl.gz": "jsonl", ".ndjson.gz": "jsonl", ".json.gz": "jsonl", ".parquet": "parquet",
            ".pq": "parquet"}
SAMPLE_BYTES = 1 << 20
SCAN_CHUNK = 8 << 20


class SourceError(ValueError):
    """SOURCE names nothing readable; raised before any work starts (CLI exit code 2)."""


@dataclass
class Plan:
    source: str
    files: list[dict]
    shards: list[dict]
    schema: pa.Schema | None
    blocks_total: int = field(init=False)

    def __post_init__(self) -> None:
        self.blocks_total = sum(len(s["blocks"]) for s in self.shards)


def _format_of(path: str) -> str | None:
    lower = path.lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return SUFFIXES[suffix]
    return None


def _uri(fs: pafs.FileSystem, path: str, source: str) -> str:
    return f"{source.split('://', 1)[0]}://{path}" if "://" in source else path


def list_source_files(source: str) -> list[tuple[str, pafs.FileInfo]]:
    """(uri, info) of every readable data file named by a file, a folder or a glob."""
    try:
        fs, path = split_uri(source)
        if any(ch in path for ch in "*?["):
            base = re.split(r"[*?\[]", path, maxsplit=1)[0].rsplit("/", 1)[0] or "/"
            infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
            infos = [i for i in infos if i.type == pafs.FileType.File and fnmatch.fnmatch(i.path, path)]
        else:
            info = fs.get_file_info(path)
            if info.type == pafs.FileType.NotFound:
                raise SourceError(f"source not found: {source}")
            infos = ([info] if info.type == pafs.FileType.File else
                     [i for i in fs.get_file_info(pafs.FileSelector(path, recursive=True))
                      if i.type == pafs.FileType.File])
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(f"cannot list source {source}: {exc}") from None
    files = sorted((_uri(fs, i.path, source), i) for i in infos if _format_of(i.path)
                   and not i.base_name.startswith((".", "_")))
    if not files:
        raise SourceError(f"no CSV, JSON-lines or Parquet files at {source}")
    return files


def _head(uri: str, compressed: bool, n: int = SAMPLE_BYTES) -> bytes:
    fs, path = split_uri(uri)
    with fs.open_input_stream(path, compression="gzip" if compressed else None) as f:
        return f.read(n)


def _text_schema(table: pa.Table) -> pa.Schema:
    # A column with no values in the sample is read as text; a cell that later fails its planned type
    # is quarantined as schema_mismatch rather than breaking its block.
    # Invalid UTF-8 in the sample makes pyarrow infer binary: text files plan text.
    return pa.schema([pa.field(f.name, pa.string() if pa.types.is_null(f.type) or pa.types.is_binary(f.type)
                               else f.type) for f in table.schema])


def _jsonl_sample(good: bytes) -> pa.Table:
    """pyarrow infers JSON types, but refuses a field whose type changes within the sample. Then each
    field takes the type most of its lines give it; the other lines are quarantined as schema_mismatch
    when their block is read, as a CSV cell that does not fit its column is."""
    try:
        return pajson.read_json(pa.BufferReader(good))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    votes: dict[str, Counter] = {}
    for line in good.splitlines():
        for field in pajson.read_json(pa.BufferReader(line)).schema:
            counter = votes.setdefault(field.name, Counter())
            if not pa.types.is_null(field.type):
                counter[field.type] += 1
    return pa.schema([(name, c.most_common(1)[0][0] if c else pa.null()) for name, c in votes.items()]).empty_table()


def infer_schema(uri: str, fmt: str) -> tuple[pa.Schema | None, int]:
    """The planned column types, from a 1 MiB sample, and the number of rows in the sample (an empty or
    header-only file has none, and types are taken from a file that has some)."""
    fs, path = split_uri(uri)
    if fmt == "parquet":
        with fs.open_input_file(path) as f:
            parquet = pq.ParquetFile(f)
            return parquet.schema_arrow, parquet.metadata.num_rows
    head = _head(uri, uri.endswith(".gz"))
    cut = head[: head.rfind(b"\n") + 1] if len(head) == SAMPLE_BYTES else head
    cut, _, _ = drop_invalid_utf8(cut, 1)   # a bad line must not turn its columns into text
    if not cut.strip():
        return None, 0
    if fmt == "csv":
        table = pacsv.read_csv(pa.BufferReader(cut), parse_options=pacsv.ParseOptions(
            invalid_row_handler=lambda row: "skip"))
    else:
        good, _, _ = jsonl_valid_lines(cut, 1)
        if not good.strip():
            return None, 0
        table = _jsonl_sample(good)
    return _text_schema(table), table.num_rows


def _line_cuts(uri: str, start: int, size: int, block_bytes: int) -> list[tuple[int, int, int]]:
    """Cut bytes [start, size) into (start, end, lines before start) ranges of about block_bytes that
    end just after a newline; lines are counted from `start`."""
    fs, path = split_uri(uri)
    cuts, block_start, block_lines, seen, pos = [], start, 0, 0, start
    with fs.open_input_file(path) as f:
        f.seek(start)
        while chunk := f.read(SCAN_CHUNK):
            newlines = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10) + pos
            while (i := int(np.searchsorted(newlines, block_start + block_bytes - 1))) < len(newlines):
                end = int(newlines[i]) + 1
                if end >= size:
                    break
                cuts.append((block_start, end, block_lines))
                block_start, block_lines = end, seen + i + 1
            seen += len(newlines)
            pos += len(chunk)
    cuts.append((block_start, size, block_lines))
    return cuts


def _text_blocks(uri: str, fmt: str, size: int, policy: FaultPolicy) -> list[dict]:
    compressed = uri.endswith(".gz")
    header = ""
    start = 0
    if fmt == "csv":
        line = _head(uri, compressed, 64 << 10).split(b"\n", 1)[0]
        header = line.decode("utf-8", "replace").rstrip("\r") + "\n"
        start = len(line) + 1
    first = 2 if fmt == "csv" else 1
    base = {"path": uri, "format": fmt, "header": header}
    if compressed:
        return [{**base, "start": start, "end": -1, "first_line": first, "compression": "gzip"}]
    return [{**base, "start": s, "end": e, "first_line": first + lines}
            for s, e, lines in _line_cuts(uri, start, size, policy.block_bytes) if e > s]


def _parquet_blocks(uri: str, policy: FaultPolicy) -> list[dict]:
    fs, path = split_uri(uri)
    with fs.open_input_file(path) as f:
        meta = pq.ParquetFile(f).metadata
    blocks, group, group_bytes, first, rows = [], [], 0, 0, 0
    for i in range(meta.num_row_groups):
        rg = meta.row_group(i)
        if group and group_bytes + rg.total_byte_size > policy.block_bytes:
            blocks.append({"path": uri, "format": "parquet", "row_groups": group, "first_line": first})
            group, group_bytes, first = [], 0, rows
        group.append(i)
        group_bytes += rg.total_byte_size
        rows += rg.num_rows
    if group:
        blocks.append({"path": uri, "format": "parquet", "row_groups": group, "first_line": first})
    return blocks


def _read_with_retries(policy: FaultPolicy, uri: str, fn):
    """Driver-side reads (schema, Parquet footers, line scans), which Ray does not retry: retried on
    retried_io_errors patterns; any other error stops planning at once, naming the file."""
    try:
        return with_io_retries(io_error_patterns(policy), policy.io_retry_attempts, fn)
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(f"cannot read {uri}: {type(exc).__name__}: {exc}") from None


def source_schema(files: list, policy: FaultPolicy) -> pa.Schema | None:
    """The schema every block is read with, checked: its column names must be unique and must not be
    those of the error record (quarantine files hold both)."""
    schema = None
    for uri, _ in files:   # the first file with rows gives the types; a header-only one at least names columns
        found, rows = _read_with_retries(policy, uri, lambda: infer_schema(uri, _format_of(uri)))
        schema = found if rows or schema is None else schema
        if rows:
            break
    if schema is not None:
        names = schema.names
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise SourceError(f"{files[0][0]}: duplicate column names in the source: {', '.join(duplicated)}")
        reserved = [n for n in names if n in ERROR_COLUMNS.names]
        if reserved:
            raise SourceError(f"{files[0][0]}: source columns {', '.join(reserved)} clash with the error record's "
                              f"columns ({', '.join(ERROR_COLUMNS.names)}): rename them")
    return schema


def plan_job(source: str, policy: FaultPolicy) -> Plan:
    files = list_source_files(source)
    schema = source_schema(files, policy)
    shards, described = [], []
    per_shard = max(1, round(policy.shard_bytes / policy.block_bytes))
    for uri, info in files:
        fmt = _format_of(uri)
        blocks = _read_with_retries(policy, uri, lambda: _parquet_blocks(uri, policy) if fmt == "parquet"
                                    else _text_blocks(uri, fmt, info.size, policy))
        tag = hashlib.sha1(uri.encode()).hexdigest()[:6]
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", info.base_name)[:40]
        fingerprint = f"{info.size}:{info.mtime_ns}"
        described.append({"uri": uri, "format": fmt, "size": info.size, "blocks": len(blocks)})
        for n, i in enumerate(range(0, len(blocks), per_shard)):
            shard_blocks = [{**b, "index": j} for j, b in enumerate(blocks[i:i + per_shard])]
            shards.append({"id": f"{stem}-{tag}-{n:04d}", "path": uri, "format": fmt,
                           "fingerprint": fingerprint, "blocks": shard_blocks})
    return Plan(source, described, shards, schema)
