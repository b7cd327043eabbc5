"""What artifacts show of quarantined rows: samples per class, redacted columns, a size cap."""

from __future__ import annotations

from blocks.policy import FaultPolicy
from flows.artifacts import MAX_CHARS, error_table, failure_markdown, summary_markdown
from flows.summary import summarize

CARD = "4111-1111-1111-1111"


def report(shard: str, blocks: int, sample: dict | None = None) -> dict:
    block = {"block": 0, "rows_in": 10, "rows_written": 9, "rows_quarantined": 1, "rows_filtered": 0,
             "error_classes": [{"values": "data_quality", "counts": 1}],
             "samples": [sample] if sample else []}
    return {"shard": shard, "blocks": [dict(block, block=i) for i in range(blocks)], "errored_blocks": 0,
            "block_retries": 0, "shard_retries": 0}


def test_redacted_columns_never_reach_an_artifact():
    sample = {"_error_class": "data_quality", "_error_type": "ValueError",
              "_error_message": f"card {CARD} failed its checksum", "_source": "s3://lake/pay.csv",
              "_line": 17, "_raw": f"7,{CARD},12.50", "id": "7", "card": CARD, "amount": "12.50"}
    reports = [report("pay-0000", 1, sample)]
    summary = summarize(reports, 1, 0, {}, 1)
    policy = FaultPolicy(redact_columns=["card"])
    texts = [summary_markdown(summary, reports, "out", policy), str(error_table(summary, reports, policy)),
             failure_markdown(dict(summary, message="x"), reports, "rayft run ...", policy)]
    assert not any(CARD in text for text in texts)
    shown = texts[0]
    assert "## Sample quarantined rows" in shown and "| 12.50 |" in shown and "| s3://lake/pay.csv |" in shown
    assert "card *** failed its checksum" in shown and "| 17 |" in shown
    # Without redaction the same sample shows the value: the test above can fail.
    assert CARD in summary_markdown(summary, reports, "out", FaultPolicy())


def test_artifacts_stay_under_the_size_cap():
    sample = {"_error_class": "data_quality", "_error_type": "ValueError", "_error_message": "x" * 200,
              "_source": "in.csv", "_line": 2, "_raw": None, "text": "y" * 200}
    reports = [report(f"shard-{i:05d}", 4, sample) for i in range(5000)]
    summary = summarize(reports, 5000, 0, {}, 20000)
    policy = FaultPolicy(sample_rows=50)
    markdown = summary_markdown(summary, reports, "out", policy)
    assert len(markdown) <= MAX_CHARS + 100 and markdown.endswith("*(truncated)*")   # 5,000 shard rows cut
    failure = failure_markdown(dict(summary, status="failed", message="m"), reports, "rayft run ...", policy)
    assert len(failure) <= MAX_CHARS + 100


def test_a_shard_report_keeps_sample_rows_per_class_for_the_whole_shard():
    from tasks.shard import cap_samples
    row = {"_error_class": "data_quality", "_line": 0}
    blocks = [{"samples": [dict(row, _line=10 * b + i) for i in range(5)] + [dict(row, _error_class="business_rule")]}
              for b in range(4)]
    cap_samples(blocks, 3)
    kept = [r for b in blocks for r in b["samples"]]
    assert [r["_line"] for r in kept if r["_error_class"] == "data_quality"] == [0, 1, 2]
    assert sum(r["_error_class"] == "business_rule" for r in kept) == 3
