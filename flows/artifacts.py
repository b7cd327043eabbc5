"""Prefect artifacts of a run: markdown summary, error-class table, failure state, progress.

Samples are capped (policy.sample_rows per class, 200 characters a value, MAX_CHARS a document) and
named columns are redacted, so an artifact stays small and free of secrets.
"""

from __future__ import annotations

from prefect.artifacts import (create_markdown_artifact, create_progress_artifact, create_table_artifact,
                               update_progress_artifact)

from blocks.policy import FaultPolicy

MAX_CHARS = 200_000
SAMPLE_KEYS = ("_error_class", "_error_type", "_error_message", "_source", "_line", "_raw")


def _cap(text: str) -> str:
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS] + "\n\n*(truncated)*"


def _redact(row: dict, policy: FaultPolicy) -> dict:
    """Named columns become ***. With any column named, so does the raw line (it can hold any column),
    and the named values are blanked wherever an error message quotes them."""
    if not policy.redact_columns:
        return row
    hidden = [str(row[c]) for c in policy.redact_columns if row.get(c) not in (None, "")]
    out = {}
    for key, value in row.items():
        if value is not None and (key in policy.redact_columns or key == "_raw"):
            value = "***"
        elif key == "_error_message" and value:
            for text in hidden:
                value = value.replace(text, "***")
        out[key] = value
    return out


def _cell(value) -> str:
    return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def samples_markdown(by_class: dict[str, list[dict]]) -> list[str]:
    """A table of sample quarantined rows per class: the error record first, then the source columns."""
    lines = []
    for cls, rows in sorted(by_class.items()):
        columns = [k for k in SAMPLE_KEYS if k in rows[0]] + [k for k in rows[0] if k not in SAMPLE_KEYS]
        lines += [f"**{cls}**, first {len(rows)}:", "", "| " + " | ".join(columns) + " |",
                  "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(_cell(row.get(k)) for k in columns) + " |" for row in rows]
        lines.append("")
    return lines


def samples(reports: list[dict], policy: FaultPolicy) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for report in reports:
        for block in report["blocks"]:
            for row in block.get("samples", []):
                bucket = out.setdefault(row["_error_class"], [])
                if len(bucket) < policy.sample_rows:
                    bucket.append(_redact(row, policy))
    return out


def summary_markdown(summary: dict, reports: list[dict], dest: str, policy: FaultPolicy) -> str:
    s = summary
    lines = [f"# prefect-ray-ft run: **{s['status']}**", "", s["message"] or "", "",
             f"Destination: `{dest}`", "", "| ledger | rows |", "|---|---:|"]
    lines += [f"| {k} | {s[k]:,} |" for k in ("rows_in", "rows_written", "rows_quarantined", "rows_dropped",
                                               "rows_filtered")]
    lines += ["", f"Error rate **{s['error_rate']:.4%}**; errored blocks {s['errored_blocks']} of "
              f"{s['blocks_total']}; retries {s['retries']}; shards {s['shards_done']}/{s['shards_total']} "
              f"done, {s['shards_skipped']} resumed from an earlier run.", "",
              ]
    if s.get("circuit_breakers"):
        lines += ["| circuit breaker | trips | calls rejected while open | last state |", "|---|---:|---:|---|"]
        lines += [f"| {n} | {c['trips']} | {c['rejected']} | {c['state']} |" for n, c in s["circuit_breakers"].items()]
        lines.append("")
    lines += ["| shard | rows in | quarantined | dropped | error rate | worst block rate |", "|---|---:|---:|---:|---:|---:|"]
    for r in sorted(reports, key=lambda r: r["shard"]):
        rin = sum(b["rows_in"] for b in r["blocks"])
        q = sum(b["rows_quarantined"] for b in r["blocks"])
        d = sum(b.get("rows_dropped", 0) for b in r["blocks"])
        worst = max((b["rows_quarantined"] / b["rows_in"] for b in r["blocks"] if b["rows_in"]), default=0)
        lines.append(f"| {r['shard']} | {rin:,} | {q:,} | {d:,} | {q / rin if rin else 0:.2%} | {worst:.2%} |")
    by_class = samples(reports, policy)
    if by_class:
        lines += ["", "## Sample quarantined rows", ""] + samples_markdown(by_class)
    return _cap("\n".join(lines))


def error_table(summary: dict, reports: list[dict], policy: FaultPolicy) -> list[dict]:
    by_class = samples(reports, policy)
    rows = []
    for cls, count in summary["error_classes"].items():
        first = (by_class.get(cls) or [{}])[0]
        rows.append({"error_class": cls, "rows": count,
                     "share_of_rows_in": round(count / summary["rows_in"], 6) if summary["rows_in"] else 0,
                     "action": policy.action_for(cls) if cls != "dropped_block" else "counted as dropped",
                     "sample_type": first.get("_error_type"), "sample_message": first.get("_error_message"),
                     "sample_source": first.get("_source"), "sample_line": first.get("_line")})
    return rows


def failure_markdown(summary: dict, reports: list[dict], resume_hint: str, policy: FaultPolicy) -> str:
    done = sorted(r["shard"] for r in reports)
    lines = ["# prefect-ray-ft run FAILED", "", f"**Why:** {summary['message']}", "",
             f"Shards committed: {len(done)} of {summary['shards_total']} (kept: a resumed run skips them).", ""]
    if summary["shards_failed"]:
        lines += ["| failed shard | error |", "|---|---|"]
        lines += [f"| {k} | {str(v)[:300]} |" for k, v in summary["shards_failed"].items()]
        lines.append("")
    dropped = [(r["shard"], b["block"], b.get("error", "")) for r in reports for b in r["blocks"] if b.get("dropped")]
    if dropped:
        lines += ["| shard | errored block | error |", "|---|---:|---|"]
        lines += [f"| {s} | {b} | {str(e)[:300]} |" for s, b, e in dropped[:100]]
        lines.append("")
    for cls, rows in samples(reports, policy).items():
        lines.append(f"**{cls}** samples: " + "; ".join(
            f"`{r.get('_source')}` line {r.get('_line')}: {r.get('_error_message')}" for r in rows))
    lines += ["", "## Resume", "", "Fix the cause (or the policy), then run the same command again; committed "
              "shards are not processed again:", "", "```", resume_hint, "```",
              "", "Or retry this flow run from the Prefect UI (`prefect flow-run retry <id>`): committed shards "
              "end `Cached`.", "", "Committed shards: " + (", ".join(f"`{d}`" for d in done[:200]) or "none")]
    return _cap("\n".join(lines))


def publish_run_artifacts(summary: dict, reports: list[dict], policy: FaultPolicy, dest: str,
                          resume_hint: str) -> None:
    create_markdown_artifact(key="rayft-summary", markdown=summary_markdown(summary, reports, dest, policy),
                             description=f"prefect-ray-ft summary ({summary['status']})")
    create_table_artifact(key="rayft-error-classes", table=error_table(summary, reports, policy) or
                          [{"error_class": "none", "rows": 0}], description="Quarantined rows by error class")
    if summary["status"] == "failed":
        create_markdown_artifact(key="rayft-failure-state",
                                 markdown=failure_markdown(summary, reports, resume_hint, policy),
                                 description="Failure state: finished and failed shards, how to resume")


class Progress:
    def __init__(self, total: int) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.id = create_progress_artifact(progress=0.0, key="rayft-progress",
                                           description="Shards committed")

    def advance(self, shards: int = 1) -> None:
        if shards:
            self.done += shards
            update_progress_artifact(self.id, progress=100.0 * self.done / self.total)
