"""Shard reports -> the run summary (the contract's ledger) and the checks that fail a job."""

from __future__ import annotations

from collections import Counter

from blocks.policy import FaultPolicy

LEDGER = ("rows_in", "rows_written", "rows_quarantined", "rows_dropped", "rows_filtered")


def block_classes(block: dict) -> Counter:
    return Counter({c["values"]: c["counts"] for c in block.get("error_classes", [])})


def summarize(reports: list[dict], shards_total: int, skipped: int, failed: dict[str, str],
              blocks_total: int) -> dict:
    blocks = [b for r in reports for b in r["blocks"]]
    totals = {k: sum(b.get(k, 0) for b in blocks) for k in LEDGER}
    classes = sum((block_classes(b) for b in blocks), Counter())
    return {
        "status": "completed", "flow_run_id": None, **totals,
        "rows_flagged": sum(b.get("rows_flagged", 0) for b in blocks),   # written, with a flag: in rows_written
        "rows_defaulted": sum(b.get("rows_defaulted", 0) for b in blocks),   # written with defaults filled in
        "errored_blocks": sum(r["errored_blocks"] for r in reports),
        "blocks_total": blocks_total,
        "error_classes": dict(sorted(classes.items())),
        "error_rate": round(totals["rows_quarantined"] / totals["rows_in"], 6) if totals["rows_in"] else 0.0,
        "shards_total": shards_total, "shards_done": len(reports), "shards_skipped": skipped,
        "shards_failed": failed,
        "retries": sum(r["block_retries"] + r["shard_retries"] for r in reports),
        "circuit_breakers": circuit_totals(blocks),
        "message": "",
    }


def failure_reason(summary: dict, policy: FaultPolicy) -> str | None:
    """Why the job fails, or None. Checked in this order: failed shards, errored blocks, error rate."""
    if summary["shards_failed"]:
        shard, error = next(iter(summary["shards_failed"].items()))
        return f"{len(summary['shards_failed'])} shard(s) failed; first {shard}: {error}"
    budget = errored_block_budget(policy, summary["blocks_total"])
    if budget >= 0 and summary["errored_blocks"] > budget:
        return (f"{summary['errored_blocks']} errored blocks exceed the budget of {budget} "
                f"(max_errored_blocks={policy.max_errored_blocks}, "
                f"max_errored_block_fraction={policy.max_errored_block_fraction})")
    if summary["error_rate"] > policy.max_error_rate:
        return (f"error rate {summary['error_rate']:.4%} ({summary['rows_quarantined']} of "
                f"{summary['rows_in']} rows quarantined) exceeds max_error_rate {policy.max_error_rate:.2%}")
    if sum(summary[k] for k in LEDGER[1:]) != summary["rows_in"]:
        return "ledger does not balance: " + ", ".join(f"{k}={summary[k]}" for k in LEDGER)
    return None


def errored_block_budget(policy: FaultPolicy, blocks_total: int) -> int:
    """-1 = unlimited; otherwise the smaller of the count and the fraction of all blocks."""
    by_fraction = int(policy.max_errored_block_fraction * blocks_total)
    if policy.max_errored_blocks < 0:
        return -1 if policy.max_errored_block_fraction >= 1 else by_fraction
    return min(policy.max_errored_blocks, by_fraction)


def circuit_totals(blocks: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for block in blocks:
        for name, c in block.get("circuits", {}).items():
            total = out.setdefault(name, {"trips": 0, "rejected": 0, "state": "closed"})
            total["trips"] += c["trips"]
            total["rejected"] += c["rejected"]
            total["state"] = "open" if c["state"] == "open" else total["state"]
    return out
