"""Replay of quarantined rows through a fixed transform: moved exactly once, ledger kept."""

from __future__ import annotations


from flows.replay import replay_flow
from helpers import EXPECTED_WRITTEN_IDS, read_dir, write_policy, write_transactions
from test_flow import artifacts_of


def test_replay_moves_fixed_rows_once_and_a_second_replay_changes_nothing(run_flow, tmp_path):
    src = write_transactions(tmp_path / "tx.csv")
    dest = tmp_path / "out"
    state, first = run_flow(src, dest, "tasks.examples:transactions",
                            write_policy(tmp_path / "p.toml", "max_error_rate = 0.9\n"))
    assert state.is_completed() and first["rows_quarantined"] == 5

    after = replay_flow(dest=str(dest), transform="helpers:lenient_transactions")
    data, q = read_dir(dest / "data"), read_dir(dest / "quarantine")
    assert sorted(data["id"]) == sorted(EXPECTED_WRITTEN_IDS + [2, 3])   # null customer, negative amount
    assert data.set_index("id").loc[2, "customer_id"] == 999 and data.set_index("id").loc[3, "amount"] == 5
    assert sorted(q["_line"]) == [6, 7, 8]            # customer 0, ragged, invalid UTF-8 stay
    assert q.set_index("_line").loc[6, "_error_class"] == "business_rule"
    assert (after["rows_written"], after["rows_quarantined"]) == (5, 3)
    assert after["rows_in"] == after["rows_written"] + after["rows_quarantined"] + after["rows_dropped"]
    assert after["replayed_from"] == first["flow_run_id"]
    assert after["error_classes"] == {"business_rule": 1, "data_quality": 2}
    assert "rayft-replay" in artifacts_of(after["replays"][-1]["flow_run_id"])

    again = replay_flow(dest=str(dest), transform="helpers:lenient_transactions")
    assert sorted(read_dir(dest / "data")["id"]) == sorted(EXPECTED_WRITTEN_IDS + [2, 3])
    assert (again["rows_written"], again["rows_quarantined"]) == (5, 3)
    assert again["replays"][-1]["rows_moved"] == 0 and len(again["replays"]) == 2
