"""Parse one block of a source file with pyarrow, keeping what could not be parsed and each row's line.

A block is a byte range of an uncompressed CSV / JSON-lines file cut at line boundaries (the whole file
when compressed), or a set of Parquet row groups. Lines are 1-based physical lines of the file (the CSV
header is line 1); for Parquet, `_line` is the 0-based row index in the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from tasks.errors import DATA_QUALITY, SCHEMA_MISMATCH
from tasks.storage import split_uri as filesystem


@dataclass
class ParseReject:
    line: int | None
    raw: str
    error_type: str
    message: str
    error_class: str = DATA_QUALITY


@dataclass
class BlockData:
    table: pa.Table
    rejects: list[ParseReject] = field(default_factory=list)
    lines: np.ndarray | None = None   # line of each table row; None where it cannot be known

    def line_of(self, rows: np.ndarray) -> np.ndarray:
        if self.lines is None:
            return np.full(len(rows), -1, dtype=np.int64)
        return self.lines[rows]


class CollectInvalidRows:
    """pyarrow invalid_row_handler: keep ragged rows instead of failing the read."""

    def __init__(self) -> None:
        self.rows: list[tuple[int | None, str, int, int]] = []

    def __call__(self, row) -> str:
        self.rows.append((row.number, row.text, row.expected_columns, row.actual_columns))
        return "skip"


def read_bytes(block: dict) -> bytes:
    fs, path = filesystem(block["path"])
    if block.get("compression") == "gzip":   # pyarrow decompresses the stream
        with fs.open_input_stream(path, compression="gzip") as f:
            return f.read()[block["start"]:]
    with fs.open_input_file(path) as f:
        f.seek(block["start"])
        return f.read(block["end"] - block["start"])


def _line_table(raw: bytes, first_line: int) -> tuple[np.ndarray, np.ndarray]:
    """(start offset, line number) of every non-empty line in raw. Empty lines yield no row."""
    arr = np.frombuffer(raw, dtype=np.uint8)
    ends = np.flatnonzero(arr == 10)
    if len(arr) and arr[-1] != 10:
        ends = np.append(ends, len(arr))
    starts = np.concatenate(([0], ends[:-1] + 1)) if len(ends) else np.zeros(0, dtype=np.int64)
    lengths = ends - starts
    last = arr[np.maximum(ends - 1, 0)] if len(arr) else np.zeros(0, dtype=np.uint8)
    nonempty = (lengths > 1) | ((lengths == 1) & (last != 13))
    numbers = np.arange(first_line, first_line + len(ends), dtype=np.int64)
    return starts[nonempty], numbers[nonempty]


def drop_invalid_utf8(raw: bytes, first_line: int) -> tuple[bytes, list[ParseReject], np.ndarray | None]:
    """Fast path: the whole block decodes. Slow path: drop the lines that do not, keep their numbers."""
    try:
        raw.decode("utf-8")
        return raw, [], None
    except UnicodeDecodeError:
        pass
    kept, kept_lines, rejects = [], [], []
    for number, line in enumerate(raw.splitlines(keepends=True), start=first_line):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            text = line.rstrip(b"\r\n").decode("utf-8", errors="backslashreplace")
            rejects.append(ParseReject(number, text, "UnicodeDecodeError", f"invalid UTF-8: {exc.reason} "
                                       f"at byte {exc.start}"))
            continue
        kept.append(line)
        kept_lines.append(number)
    return b"".join(kept), rejects, np.asarray(kept_lines, dtype=np.int64)


def cast_cells(table: pa.Table, schema: pa.Schema) -> tuple[pa.Table, dict[int, str]]:
    """Cast string columns to the planned types. Cells that do not convert: {row: reason}, row dropped."""
    bad_rows: dict[int, str] = {}
    columns = []
    for name in table.column_names:
        col = table[name]
        target = schema.field(name).type if name in schema.names else pa.string()
        try:
            columns.append(pc.cast(col, target))
            continue
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        good_values = []
        for value in pc.unique(col).to_pylist():   # slow path only: distinct values, one cast each
            try:
                pc.cast(pa.array([value], pa.string()), target)
                good_values.append(value)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                for row in np.flatnonzero(pc.fill_null(pc.equal(col, value), False).to_numpy()):
                    bad_rows.setdefault(int(row), f"column {name!r}: {value!r} is not {target}")
        ok = pc.is_in(col, pa.array(good_values, pa.string()))
        columns.append(pc.cast(pc.if_else(ok, col, pa.scalar(None, pa.string())), target))
    table = pa.Table.from_arrays(columns, names=table.column_names)
    if bad_rows:
        keep = np.ones(table.num_rows, dtype=bool)
        keep[list(bad_rows)] = False
        table = table.filter(pa.array(keep))
    return table, bad_rows


def _line_text(raw: bytes, start: int) -> str:
    end = raw.find(b"\n", start)
    return raw[start:None if end < 0 else end].rstrip(b"\r").decode("utf-8", "backslashreplace")


def read_csv_block(block: dict, schema: pa.Schema | None) -> BlockData:
    header = block["header"].encode()
    raw = read_bytes(block)
    raw, rejects, kept_lines = drop_invalid_utf8(raw, block["first_line"])
    handler = CollectInvalidRows()
    read_opts = pacsv.ReadOptions(use_threads=False, block_size=max(1 << 20, len(raw) + len(header) + 1))
    parse_opts = pacsv.ParseOptions(invalid_row_handler=handler)

    def parse(types):
        handler.rows.clear()
        return pacsv.read_csv(pa.BufferReader(header + raw), read_options=read_opts,
                              parse_options=parse_opts, convert_options=pacsv.ConvertOptions(column_types=types))

    try:
        table, typed = parse(schema), True
    except pa.ArrowInvalid:   # a cell does not fit the planned type: read as text, cast cell by cell
        table, typed = parse({n: pa.string() for n in schema.names}), False
    starts, numbers = _line_table(raw, block["first_line"])
    if kept_lines is not None:   # numbers count lines of the cleaned buffer: map back to the file's
        numbers = kept_lines[numbers - block["first_line"]]
    # The handler counts non-empty lines with the header as 1: its row n is non-empty data line n - 2.
    is_row = np.ones(len(numbers), dtype=bool)
    for n, text, expected, actual in handler.rows:
        known = n is not None and 0 <= n - 2 < len(numbers)
        if known:
            is_row[n - 2] = False
        rejects.append(ParseReject(int(numbers[n - 2]) if known else None, text, "CsvParseError",
                                   f"expected {expected} fields, found {actual}"))
    row_pos = np.flatnonzero(is_row)
    if len(row_pos) != table.num_rows:   # e.g. newlines inside quoted values: lines unknown
        row_pos = None
    if not typed:
        table, bad = cast_cells(table, schema)
        for row, reason in bad.items():
            line = int(numbers[row_pos[row]]) if row_pos is not None else None
            text = _line_text(raw, int(starts[row_pos[row]])) if row_pos is not None else ""
            rejects.append(ParseReject(line, text, "ArrowInvalid", reason, SCHEMA_MISMATCH))
        if row_pos is not None and bad:
            row_pos = np.delete(row_pos, sorted(bad))
    return BlockData(table, rejects, None if row_pos is None else numbers[row_pos])


def jsonl_valid_lines(raw: bytes, first_line: int) -> tuple[bytes, list[ParseReject], np.ndarray]:
    kept, kept_lines, rejects = [], [], []
    for number, line in enumerate(raw.splitlines(keepends=True), start=first_line):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
            if not isinstance(value, dict):
                raise ValueError("a JSON-lines row must be an object")
        except ValueError as exc:
            rejects.append(ParseReject(number, line.rstrip(b"\r\n").decode("utf-8", "backslashreplace"),
                                       type(exc).__name__, str(exc)[:300]))
            continue
        kept.append(line)
        kept_lines.append(number)
    return b"".join(kept), rejects, np.asarray(kept_lines, dtype=np.int64)


def read_jsonl_block(block: dict, schema: pa.Schema | None) -> BlockData:
    raw = read_bytes(block)
    opts = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer") if schema else None
    try:
        table = pajson.read_json(pa.BufferReader(raw), parse_options=opts) if raw.strip() else _empty(schema)
        _, numbers = _line_table(raw, block["first_line"])
        return BlockData(table, [], numbers if len(numbers) == table.num_rows else None)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    raw, rejects, lines = jsonl_valid_lines(raw, block["first_line"])
    try:
        table = pajson.read_json(pa.BufferReader(raw), parse_options=opts) if raw else _empty(schema)
        return BlockData(table, rejects, lines)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    # Values of the wrong type: parse line by line and keep the lines that fit the schema.
    tables, keep_lines = [], []
    for number, line in zip(lines, raw.splitlines()):
        try:
            tables.append(pajson.read_json(pa.BufferReader(line), parse_options=opts))
            keep_lines.append(number)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            rejects.append(ParseReject(int(number), line.decode("utf-8", "backslashreplace"), "ArrowInvalid",
                                       str(exc)[:300], SCHEMA_MISMATCH))
    table = pa.concat_tables(tables, promote_options="default") if tables else _empty(schema)
    return BlockData(table, rejects, np.asarray(keep_lines, dtype=np.int64))


def read_parquet_block(block: dict, schema: pa.Schema | None) -> BlockData:
    fs, path = filesystem(block["path"])
    with fs.open_input_file(path) as f:
        table = pq.ParquetFile(f).read_row_groups(block["row_groups"])
    first = block["first_line"]
    return BlockData(table, [], np.arange(first, first + table.num_rows, dtype=np.int64))


def _empty(schema: pa.Schema | None) -> pa.Table:
    return (schema or pa.schema([])).empty_table()


READERS = {"csv": read_csv_block, "jsonl": read_jsonl_block, "parquet": read_parquet_block}


def read_block(block: dict, schema: pa.Schema | None) -> BlockData:
    return READERS[block["format"]](block, schema)
