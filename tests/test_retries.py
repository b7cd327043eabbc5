"""Levels 2 and 3 on real Ray and Prefect: retries, crashes, errored blocks, unpicklable errors, breaker."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from blocks.policy import FaultPolicy
from flows.planning import SourceError, plan_job
from helpers import read_dir, write_numbered_files, write_policy
from test_flow import artifacts_of
from tasks.storage import register_filesystem

FAST = "shard_retry_delay_seconds = 0\n"


def ids_written(dest: Path) -> list[int]:
    return sorted(int(i) for i in read_dir(dest / "data").get("id", []))


def test_transient_errors_are_retried_and_every_row_written_once(run_flow, tmp_path):
    src = write_numbered_files(tmp_path / "in", 3, 50)
    policy = write_policy(tmp_path / "p.toml", FAST + 'retry_exceptions = ["ConnectionError"]\n')
    state, summary = run_flow(src, tmp_path / "out", "helpers:connection_error_twice", policy)
    assert state.is_completed(), summary
    assert ids_written(tmp_path / "out") == list(range(150))
    assert summary["retries"] >= 6   # two retries for each of the three blocks
    assert summary["rows_quarantined"] == 0


def test_map_errors_matching_a_pattern_are_retried_inside_the_task(run_flow, tmp_path):
    """retried_map_errors + max_map_retries: Ray Data calls the map function again in the same task.
    Nothing else retries a RuntimeError here (not in retry_exceptions, no shard retries)."""
    src = write_numbered_files(tmp_path / "in", 2, 30)
    policy = write_policy(tmp_path / "p.toml", FAST + 'max_map_retries = 2\nretried_map_errors = ["flaky upstream"]\n'
                          "shard_retries = 0\n")
    state, summary = run_flow(src, tmp_path / "out", "helpers:flaky_message_twice", policy)
    assert state.is_completed(), summary
    assert ids_written(tmp_path / "out") == list(range(60))
    assert summary["retries"] == 4 and summary["rows_quarantined"] == 0   # two more calls per block
    other = write_numbered_files(tmp_path / "in2", 2, 31)   # fresh batches: their attempts start at 0
    state, summary = run_flow(other, tmp_path / "again", "helpers:flaky_message_twice",
                              write_policy(tmp_path / "q.toml", FAST + "shard_retries = 0\n"))
    assert state.is_failed() and "flaky upstream" in str(summary["shards_failed"])   # no pattern: no retry


def test_value_errors_are_not_retried_but_handled_per_row(run_flow, tmp_path):
    src = write_numbered_files(tmp_path / "in", 1, 40)
    policy = write_policy(tmp_path / "p.toml", FAST + "max_error_rate = 1.0\n")
    state, summary = run_flow(src, tmp_path / "out", "helpers:value_error_twice", policy)
    assert state.is_completed(), summary
    assert summary["retries"] == 0
    written, q = ids_written(tmp_path / "out"), read_dir(tmp_path / "out" / "quarantine")
    assert sorted(written + [int(i) for i in q.get("id", [])]) == list(range(40))   # each row once
    assert set(q.get("_error_type", [])) <= {"ValueError"}
    assert summary["rows_in"] == summary["rows_written"] + summary["rows_quarantined"] == 40


@pytest.mark.parametrize("compute", ["tasks", "actors"])
def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(run_flow, tmp_path, compute):
    src = write_numbered_files(tmp_path / "in", 4, 50)
    policy = write_policy(tmp_path / "p.toml", FAST + f'inject_kill_once = true\ncompute = "{compute}"\n')
    state, summary = run_flow(src, tmp_path / "out", "tasks.examples:passthrough", policy)
    assert state.is_completed(), summary
    assert ids_written(tmp_path / "out") == list(range(200))
    assert summary["retries"] >= 1 and summary["rows_dropped"] == 0
    assert len(list((tmp_path / "out" / "_rayft" / "faults").rglob("killed-once"))) == 1


def test_errored_block_within_budget_is_counted_and_quarantined(run_flow, tmp_path):
    src = write_numbered_files(tmp_path / "in", 10, 100)
    policy = write_policy(tmp_path / "p.toml", FAST + "max_errored_blocks = 1\nmax_error_rate = 0\n")
    state, summary = run_flow(src, tmp_path / "out", "helpers:fail_ids_400s", policy)
    assert state.is_completed(), summary
    assert (summary["rows_in"], summary["rows_written"], summary["rows_dropped"]) == (1000, 900, 100)
    assert summary["errored_blocks"] == 1
    assert ids_written(tmp_path / "out") == [i for i in range(1000) if not 400 <= i <= 499]
    q = read_dir(tmp_path / "out" / "quarantine")
    assert len(q) == 100 and set(q["_error_class"]) == {"dropped_block"}
    assert {Path(s).name for s in q["_source"]} == {"file4.csv"}
    assert sorted(q["_line"]) == list(range(2, 102))
    assert sorted(int(i) for i in q["id"]) == list(range(400, 500))
    assert q["_error_message"].str.contains("RuntimeError: poison batch").all()


def test_errored_block_over_budget_fails_and_commits_nothing_final(run_flow, tmp_path):
    src = write_numbered_files(tmp_path / "in", 10, 100)
    policy = write_policy(tmp_path / "p.toml", FAST + "max_errored_blocks = 0\n")
    state, summary = run_flow(src, tmp_path / "out", "helpers:fail_ids_400s", policy)
    assert state.is_failed()
    assert summary["status"] == "failed"
    [(shard, error)] = summary["shards_failed"].items()
    assert shard.startswith("file4.csv") and "RuntimeError: poison batch" in error
    assert not (tmp_path / "out" / "data").exists() and not (tmp_path / "out" / "quarantine").exists()
    failure = artifacts_of(summary["flow_run_id"])["rayft-failure-state"].data
    assert "file4.csv" in failure and "poison batch" in failure


def test_a_listed_deterministic_error_stops_after_the_retry_bounds(run_flow, tmp_path):
    src = write_numbered_files(tmp_path / "in", 1, 10)
    policy = write_policy(tmp_path / "p.toml", FAST + "max_task_retries = 2\nshard_retries = 1\n")
    started = time.monotonic()
    state, summary = run_flow(src, tmp_path / "out", "helpers:always_connection_error", policy)
    assert state.is_failed() and time.monotonic() - started < 120
    attempts = list((tmp_path / "out" / "_rayft" / "shards").rglob("attempts/*.json"))
    assert len(attempts) == (2 + 1) * (1 + 1)   # Ray attempts x Prefect attempts, then it stops
    assert "ConnectionError" in next(iter(summary["shards_failed"].values()))
    # The failed run's summary counts them: 2 Ray retries in each of the 2 Prefect attempts, plus the
    # Prefect retry: every attempt after the first.
    assert (summary["retries"], summary["errored_blocks"]) == (5, 1)


def test_an_unpicklable_exception_still_reaches_summary_and_artifacts(run_flow, tmp_path):
    src = write_numbered_files(tmp_path / "in", 5, 100)
    policy = write_policy(tmp_path / "p.toml", FAST + "max_errored_blocks = 0\n")
    state, summary = run_flow(src, tmp_path / "out", "helpers:raise_unpicklable", policy)
    assert state.is_failed()
    error = next(iter(summary["shards_failed"].values()))
    assert "Unpicklable: code 42: cannot be unpickled" in error
    assert "Unpicklable: code 42" in artifacts_of(summary["flow_run_id"])["rayft-failure-state"].data


def test_the_circuit_breaker_opens_and_the_run_reports_it(run_flow, tmp_path):
    src = write_numbered_files(tmp_path / "in", 1, 20)
    state, summary = run_flow(src, tmp_path / "out", "helpers:enrich_with_breaker")
    assert state.is_completed(), summary
    geo = summary["circuit_breakers"]["geo"]
    assert geo["trips"] == 1 and geo["rejected"] == 17 and geo["state"] == "open"
    assert "| geo | 1 | 17 | open |" in artifacts_of(summary["flow_run_id"])["rayft-summary"].data


def test_a_breaker_that_trips_on_a_failed_attempt_is_still_reported(run_flow, tmp_path):
    src = write_numbered_files(tmp_path / "in", 1, 20)
    state, summary = run_flow(src, tmp_path / "out", "helpers:breaker_trips_then_recovers",
                              write_policy(tmp_path / "p.toml", FAST))
    assert state.is_completed(), summary
    assert ids_written(tmp_path / "out") == list(range(20)) and summary["retries"] >= 1
    assert summary["circuit_breakers"]["geo-flaky"]["trips"] == 1
    assert summary["events"] == ["rayft.circuit.tripped"]


class FlakyOpens(pafs.FileSystemHandler):
    """Local files whose first `failures` opens raise an error with the given message."""

    def __init__(self, failures: int, message: str) -> None:
        self.local, self.left, self.message = pafs.LocalFileSystem(), failures, message

    def _maybe_fail(self):
        if self.left > 0:
            self.left -= 1
            raise OSError(self.message)

    def open_input_file(self, path):
        self._maybe_fail()
        return self.local.open_input_file(path)

    def open_input_stream(self, path):
        self._maybe_fail()
        return self.local.open_input_stream(path)

    def get_file_info(self, paths):
        return self.local.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.local.get_file_info(selector)

    def get_type_name(self):
        return "flaky"

    def equals(self, other):
        return self is other

    def normalize_path(self, path):
        return path


def _not_used(self, *args, **kwargs):
    raise NotImplementedError("reads only")


for _name in ("copy_file", "create_dir", "delete_dir", "delete_dir_contents", "delete_file",
              "delete_root_dir_contents", "move", "open_append_stream", "open_output_stream"):
    setattr(FlakyOpens, _name, _not_used)
FlakyOpens.__abstractmethods__ = frozenset()


@pytest.mark.parametrize("message, ok", [("AWS Error SLOW_DOWN: please slow down", True),
                                         ("disk on fire", False)])
def test_parquet_schema_read_retries_only_matching_io_errors(tmp_path, message, ok):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": list(range(5))}), path)
    handler = FlakyOpens(2, message)
    register_filesystem("flaky", lambda: pafs.PyFileSystem(handler))
    policy = FaultPolicy(io_retry_attempts=4)
    if ok:
        plan = plan_job(f"flaky://{path}", policy)
        assert plan.schema.names == ["id"] and handler.left == 0
    else:
        with pytest.raises(SourceError, match=str(path)):
            plan_job(f"flaky://{path}", policy)
        assert handler.left == 1   # failed at the first error: not retried


def test_rayft_faults_in_the_environment_alone_tears_a_write(tmp_path, monkeypatch):
    """RAYFT_FAULTS wins over the policy: kill_mid_write_once fires with no fault in the policy."""
    import tasks.faults
    from blocks.runtime import row_rules
    from tasks.process_block import BlockJob, process_block

    class Killed(Exception):
        pass

    def exit_(code):
        raise Killed(code)
    monkeypatch.setattr(tasks.faults.os, "_exit", exit_)
    monkeypatch.setenv("RAYFT_FAULTS", '{"kill_mid_write_once": true}')
    src = write_numbered_files(tmp_path / "in", 1, 5)
    plan = plan_job(str(src), FaultPolicy())
    job = BlockJob("tasks.examples:passthrough", row_rules(FaultPolicy()), plan.schema.serialize().to_pybytes(),
                   str(tmp_path / "attempt"), True, str(tmp_path / "faults"))
    with pytest.raises(Killed):
        process_block(plan.shards[0]["blocks"][0], job)
    torn = tmp_path / "attempt" / "data" / "00000.parquet"
    assert torn.exists() and torn.stat().st_size < 4100   # half a file, as a killed writer leaves it
    assert (tmp_path / "faults" / "killed-mid-write").exists()
