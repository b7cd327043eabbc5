"""Parsing blocks with pyarrow: ragged rows, invalid UTF-8, bad cells, JSON lines, Parquet, lines."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from blocks.policy import FaultPolicy
from flows.planning import plan_job
from helpers import write_transactions
from tasks.reading import read_block


def only_block(path, **policy):
    plan = plan_job(str(path), FaultPolicy(**policy))
    assert len(plan.shards) == 1 and len(plan.shards[0]["blocks"]) == 1
    return read_block(plan.shards[0]["blocks"][0], plan.schema), plan


def test_csv_rejects_keep_raw_text_and_line(tmp_path):
    data, _ = only_block(write_transactions(tmp_path / "tx.csv"))
    assert data.table["id"].to_pylist() == [1, 2, 3, 4, 5, 8]
    assert list(data.lines) == [2, 3, 4, 5, 6, 9]
    rejects = {r.line: (r.error_type, r.raw) for r in data.rejects}
    assert rejects == {7: ("CsvParseError", "6,13,40,extra"), 8: ("UnicodeDecodeError", "7,14,\\xff9")}


def test_empty_lines_do_not_shift_line_numbers(tmp_path):
    p = tmp_path / "e.csv"
    p.write_text("a,b\n1,2\n\n3,4,5\n\n6,7\n")
    data, _ = only_block(p)
    assert data.table["a"].to_pylist() == [1, 6] and list(data.lines) == [2, 6]
    assert [r.line for r in data.rejects] == [4]


def test_cells_that_do_not_fit_the_planned_type_are_schema_mismatch(tmp_path):
    p = tmp_path / "t.csv"
    n = 150_000   # past the 1 MiB schema sample
    p.write_text("id,v\n" + "".join(f"{i},{i}\n" for i in range(n)) + f"{n},abc\n{n + 1},5\n")
    data, plan = only_block(p, block_bytes=8 << 20)
    assert plan.schema.field("v").type == pa.int64()
    assert data.table.num_rows == n + 1 and data.table["id"][-1].as_py() == n + 1
    assert data.lines[-1] == n + 3
    [reject] = data.rejects
    assert (reject.line, reject.error_class, reject.raw) == (n + 2, "schema_mismatch", f"{n},abc")


def test_jsonl_bad_lines_are_rejected_with_their_line(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text('{"id": 1}\n{"id": 2\n{"id": 3}\n[4]\n')
    data, _ = only_block(p)
    assert data.table["id"].to_pylist() == [1, 3] and list(data.lines) == [1, 3]
    assert [r.line for r in data.rejects] == [2, 4]


def test_parquet_lines_are_row_indexes(tmp_path):
    p = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": list(range(10))}), p, row_group_size=4)
    plan = plan_job(str(p), FaultPolicy(block_bytes=1024))
    lines = [int(x) for s in plan.shards for b in s["blocks"] for x in read_block(b, plan.schema).lines]
    assert lines == list(range(10))


def test_blocks_cover_every_line_exactly_once(tmp_path):
    p = tmp_path / "big.csv"
    p.write_text("id,v\n" + "".join(f"{i},{'x' * (i % 17)}\n" for i in range(5000)))
    plan = plan_job(str(p), FaultPolicy(block_bytes=4096, shard_bytes=16384))
    assert len(plan.shards) > 3 and plan.blocks_total > 10
    ids, lines = [], []
    for shard in plan.shards:
        for block in shard["blocks"]:
            data = read_block(block, plan.schema)
            ids += data.table["id"].to_pylist()
            lines += [int(x) for x in data.lines]
    assert ids == list(range(5000))
    assert lines == [i + 2 for i in range(5000)]
    again = plan_job(str(p), FaultPolicy(block_bytes=4096, shard_bytes=16384))
    assert [s["id"] for s in again.shards] == [s["id"] for s in plan.shards]


def test_a_gzipped_csv_is_one_block_with_its_lines(tmp_path):
    import gzip
    p = tmp_path / "t.csv.gz"
    p.write_bytes(gzip.compress(b"id,v\n1,2\n3,4,5\n6,7\n"))
    data, plan = only_block(p)
    assert plan.schema.field("id").type == pa.int64()
    assert data.table["id"].to_pylist() == [1, 6] and list(data.lines) == [2, 4]
    assert [(r.line, r.raw) for r in data.rejects] == [(3, "3,4,5")]


def test_empty_and_header_only_files_neither_break_nor_type_the_plan(tmp_path):
    (tmp_path / "a_empty.csv").write_bytes(b"")
    (tmp_path / "b_header.csv").write_text("id,v\n")
    (tmp_path / "c_data.csv").write_text("id,v\n1,2\n3,4\n")
    plan = plan_job(str(tmp_path), FaultPolicy())
    assert plan.schema.field("id").type == pa.int64()   # from the file with rows, not the header-only one
    assert [s["path"].rsplit("/", 1)[1] for s in plan.shards] == ["c_data.csv"]


def test_a_jsonl_field_whose_type_changes_in_the_sample_takes_the_majority_type(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text('{"id": 1}\n{"id": "x"}\n{"id": 3}\n')
    data, plan = only_block(p)
    assert plan.schema.field("id").type == pa.int64()
    assert data.table["id"].to_pylist() == [1, 3] and list(data.lines) == [1, 3]
    assert [(r.line, r.error_class) for r in data.rejects] == [(2, "schema_mismatch")]
