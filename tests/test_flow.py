"""The main flow on real Ray and a real Prefect server: rows, ledger, artifacts, failure state."""

from __future__ import annotations

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from helpers import EXPECTED_QUARANTINE, EXPECTED_WRITTEN_IDS, read_dir, write_policy, write_transactions


def artifacts_of(flow_run_id: str) -> dict[str, object]:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {a.key: a for a in found}


def assert_transactions_output(dest, summary):
    assert summary["status"] == "completed"
    assert (summary["rows_in"], summary["rows_written"], summary["rows_quarantined"]) == (8, 3, 5)
    assert summary["rows_in"] == summary["rows_written"] + summary["rows_quarantined"] + summary["rows_dropped"]
    data = read_dir(dest / "data")
    assert sorted(data["id"]) == EXPECTED_WRITTEN_IDS
    assert list(data.sort_values("id")["amount_category"]) == ["low", "high", "low"]
    q = read_dir(dest / "quarantine")
    assert errors_by_line(q) == EXPECTED_QUARANTINE
    assert set(q["_source"]) == {str(dest.parent / "tx.csv")}
    assert q.set_index("_line").loc[7, "_raw"] == "6,13,40,extra"


def errors_by_line(q):
    return {int(line): (cls, typ) for line, cls, typ in zip(q["_line"], q["_error_class"], q["_error_type"])}


LENIENT = "max_error_rate = 0.9\n"


def test_transactions_rows_isolated_and_artifacts_left(run_flow, tmp_path):
    src = write_transactions(tmp_path / "tx.csv")
    state, summary = run_flow(src, tmp_path / "out", "tasks.examples:transactions",
                              write_policy(tmp_path / "p.toml", LENIENT))
    assert state.is_completed()
    assert_transactions_output(tmp_path / "out", summary)
    assert summary["error_classes"] == {"business_rule": 1, "data_quality": 4}
    arts = artifacts_of(summary["flow_run_id"])
    assert {"rayft-summary", "rayft-error-classes", "rayft-progress"} <= set(arts)
    assert "rows_quarantined | 5 |" in arts["rayft-summary"].data
    assert "| 6,13,40,extra |" in arts["rayft-summary"].data   # a sample row: the ragged line, raw
    assert "rayft-failure-state" not in arts


def test_a_plain_raising_transform_is_bisected_to_the_bad_rows(run_flow, tmp_path):
    src = write_transactions(tmp_path / "tx.csv")
    state, summary = run_flow(src, tmp_path / "out", "tasks.examples:transactions_raising",
                              write_policy(tmp_path / "p.toml", LENIENT))
    assert state.is_completed()
    q = read_dir(tmp_path / "out" / "quarantine")
    assert errors_by_line(q) == {3: ("data_quality", "ValueError"), 4: ("data_quality", "ValueError"),
                   6: ("business_rule", "BusinessRuleError"), 7: ("data_quality", "CsvParseError"),
                   8: ("data_quality", "UnicodeDecodeError")}
    assert sorted(read_dir(tmp_path / "out" / "data")["id"]) == EXPECTED_WRITTEN_IDS


def test_error_rate_breach_fails_with_failure_state_and_nothing_published(run_flow, tmp_path):
    src = write_transactions(tmp_path / "tx.csv")
    state, summary = run_flow(src, tmp_path / "out", "tasks.examples:transactions")
    assert state.is_failed()
    assert summary["status"] == "failed" and "max_error_rate" in summary["message"]
    assert not (tmp_path / "out" / "data").exists()
    arts = artifacts_of(summary["flow_run_id"])
    failure = arts["rayft-failure-state"].data
    assert "error rate" in failure and "rayft run" in failure and "Resume" in failure


def test_error_rate_warning_event_reaches_the_server(run_flow, tmp_path):
    """The flights-like warning: 5 of 8 rows quarantined is above warn_error_rate, below max_error_rate."""
    from prefect.events.clients import get_events_subscriber  # noqa: F401 - proves the events API exists
    src = write_transactions(tmp_path / "tx.csv")
    state, summary = run_flow(src, tmp_path / "out", "tasks.examples:transactions",
                              write_policy(tmp_path / "p.toml", LENIENT))
    assert summary["events"] == ["rayft.error-rate.warning"]
    import time
    from prefect.client.orchestration import get_client
    found = []
    for _ in range(40):
        with get_client(sync_client=True) as client:
            response = client.request("POST", "/events/filter", json={"filter": {
                "event": {"name": ["rayft.error-rate.warning"]}, "order": "DESC"}, "limit": 50})
        found = [e for e in response.json()["events"] if e["payload"].get("flow_run_id") == summary["flow_run_id"]]
        if found:
            break
        time.sleep(0.5)
    assert found and found[0]["payload"]["rows_quarantined"] == 5


def test_the_shipped_automation_fires_on_the_warning_event(run_flow, tmp_path):
    import importlib.util
    import time
    from pathlib import Path
    from prefect.client.orchestration import get_client
    spec = importlib.util.spec_from_file_location(
        "automations", Path(__file__).parent.parent / "deployments" / "automations.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    automations = {a.name: a for a in module.create_automations()}
    warning = automations["rayft: error rate warning"]
    time.sleep(2)   # let the server's trigger service load the new automation
    src = write_transactions(tmp_path / "tx.csv")
    run_flow(src, tmp_path / "out", "tasks.examples:transactions", write_policy(tmp_path / "p.toml", LENIENT))
    fired = []
    for _ in range(60):
        with get_client(sync_client=True) as client:
            events = client.request("POST", "/events/filter", json={"filter": {
                "event": {"name": ["prefect.automation.triggered"]},
                "resource": {"id": [f"prefect.automation.{warning.id}"]}}, "limit": 10}).json()["events"]
        if events:
            fired = events
            break
        time.sleep(0.5)
    assert fired, "the automation did not fire"


def test_a_policy_ray_address_this_run_does_not_use_fails_before_any_work(run_flow, tmp_path):
    """A deployment's Ray is chosen before the policy is read: say so instead of running locally."""
    import pytest
    from blocks.policy import PolicyError
    src = write_transactions(tmp_path / "tx.csv")
    state, summary = run_flow(src, tmp_path / "out", "tasks.examples:transactions",
                              write_policy(tmp_path / "p.toml", 'ray_address = "10.9.8.7:6379"\n'))
    assert state.is_failed() and summary is None
    with pytest.raises(PolicyError, match="RAYFT_RAY_ADDRESS=10.9.8.7:6379"):
        state.result()
    assert not (tmp_path / "out").exists()


def test_output_dtypes_that_drift_between_blocks_read_back_as_one_table(run_flow, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from helpers import write_numbered_files
    src = write_numbered_files(tmp_path / "in", 3, 100)   # one block per file
    state, summary = run_flow(src, tmp_path / "out", "helpers:drifting_dtypes")
    assert state.is_completed(), summary
    table = pq.read_table(tmp_path / "out" / "data")   # fails on files of different schemas
    assert table.num_rows == 300 and table.schema.field("score").type == pa.float64()
    assert table.schema.field("note").type == pa.string()
    assert table["only_first"].null_count == 200 and table["note"].null_count == 100
    assert sorted(table["score"].drop_null().to_pylist()) == list(range(1, 300))


def test_output_types_that_cannot_be_unified_fail_before_publishing(run_flow, tmp_path):
    from helpers import write_numbered_files
    src = write_numbered_files(tmp_path / "in", 2, 100)
    state, summary = run_flow(src, tmp_path / "out", "helpers:incompatible_dtypes")
    assert state.is_failed() and summary["status"] == "failed"
    assert "cannot share one schema" in summary["message"] and "code" in summary["message"]
    assert not (tmp_path / "out" / "data").exists()


def test_an_input_that_cannot_be_read_still_leaves_its_failure_state(run_flow, tmp_path):
    src = tmp_path / "broken.parquet"
    src.write_bytes(b"this is not a parquet file")
    state, summary = run_flow(src, tmp_path / "out")
    assert state.is_failed() and summary["status"] == "failed"
    assert "broken.parquet" in summary["message"] and summary["rows_in"] == 0
    failure = artifacts_of(summary["flow_run_id"])["rayft-failure-state"].data
    assert "broken.parquet" in failure and "rayft run" in failure


def test_a_header_only_input_completes_with_an_empty_ledger(run_flow, tmp_path):
    src = tmp_path / "h.csv"
    src.write_text("id,v\n")
    state, summary = run_flow(src, tmp_path / "out")
    assert state.is_completed(), summary
    assert (summary["rows_in"], summary["rows_written"], summary["shards_total"]) == (0, 0, 0)


def test_a_column_only_some_files_have_is_kept_in_data_and_quarantine(run_flow, tmp_path):
    import pyarrow.parquet as pq
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.csv").write_text("id,customer_id,amount\n1,10,5\n2,,6\n")
    (folder / "b.csv").write_text("id,customer_id,amount,channel\n3,11,7,web\n4,,8,shop\n")
    state, summary = run_flow(folder, tmp_path / "out", "tasks.examples:transactions",
                              write_policy(tmp_path / "p.toml", LENIENT))
    assert state.is_completed(), summary
    data = pq.read_table(tmp_path / "out" / "data").to_pandas().set_index("id")
    assert data.loc[3, "channel"] == "web" and data["channel"].isna().sum() == 1
    q = pq.read_table(tmp_path / "out" / "quarantine").to_pandas().set_index("_line")
    assert sorted(q["id"]) == ["2", "4"] and list(q["channel"].fillna("")) == ["", "shop"]


def test_flagged_rows_are_written_with_their_flag_and_counted(run_flow, tmp_path):
    src = write_transactions(tmp_path / "tx.csv")
    state, summary = run_flow(src, tmp_path / "out", "tasks.examples:transactions",
                              write_policy(tmp_path / "p.toml", LENIENT + 'business_rule = "flag"\n'))
    assert state.is_completed(), summary
    assert (summary["rows_written"], summary["rows_quarantined"], summary["rows_flagged"]) == (4, 4, 1)
    data = read_dir(tmp_path / "out" / "data").set_index("id")
    assert data.loc[5, "_flag_class"] == "business_rule" and data["_flag_class"].notna().sum() == 1
    assert "business_rule" not in summary["error_classes"]   # flagged rows are written, not quarantined
    assert summary["rows_defaulted"] == 0
