"""Level 4 on real Ray and Prefect: crash and resume, Prefect's flow-run retry, torn writes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from helpers import read_dir, write_numbered_files, write_policy
from processes import CliProcess

SLOW = "max_concurrent_shards = 2\nshard_retry_delay_seconds = 0\n"


def committed(dest: Path) -> int:
    return len(list((dest / "_rayft" / "shards").glob("*/*/COMMITTED.json")))


def assert_every_visible_file_readable(dest: Path) -> None:
    for path in list((dest / "data").glob("*")) + list((dest / "quarantine").glob("*")):
        pq.read_table(path)   # raises on a torn or partial file
        assert path.suffix == ".parquet", path


@pytest.mark.slow
def test_sigkill_at_half_then_resume_gives_exactly_the_uninterrupted_output(run_flow, tmp_path):
    src = write_numbered_files(tmp_path / "in", 8, 200)
    policy = write_policy(tmp_path / "p.toml", SLOW)
    env = {"PYTHONPATH": str(Path(__file__).parent)}

    def args(dest):
        return [str(a) for a in ("run", src, dest, "--transform", "helpers:slow_passthrough", "--policy",
                                 policy, "--json")]
    code, out, err = CliProcess(*args(tmp_path / "full"), env=env).wait()
    assert code == 0, err[-3000:]
    full = json.loads(out)
    assert full["shards_total"] == 8 and full["shards_skipped"] == 0

    dest = tmp_path / "out"
    first = CliProcess(*args(dest), env=env)
    deadline = time.monotonic() + 300
    while committed(dest) < 4 and time.monotonic() < deadline and first.proc.poll() is None:
        time.sleep(0.05)
    first.kill_all()
    done_at_kill = committed(dest)
    assert 1 <= done_at_kill < 8, done_at_kill
    assert not (dest / "data").exists()   # nothing published by the killed run

    code, out, err = CliProcess(*args(dest), env=env).wait()
    assert code == 0, err[-3000:]
    resumed = json.loads(out)
    assert resumed["shards_skipped"] >= 1 and resumed["shards_done"] == 8
    # Both cold CLI runs. The shards phase excludes the fixed start-up (server, Ray, warm-up), which
    # both runs pay; with half the shards left it must take clearly less (0.57x measured).
    assert resumed["timings"]["shards"] < full["timings"]["shards"] * 0.7, (resumed["timings"], full["timings"])
    assert resumed["timings"]["warmup"] > 0 and full["timings"]["warmup"] > 0
    ids = list(read_dir(dest / "data")["id"])
    assert sorted(ids) == list(range(1600)) and len(ids) == len(set(ids))
    assert_every_visible_file_readable(dest)


def test_prefect_flow_retry_reuses_committed_shards_as_cached(run_flow, tmp_path):
    src = write_numbered_files(tmp_path / "in", 4, 100)
    policy = write_policy(tmp_path / "p.toml", SLOW + "shard_retries = 0\n")
    state, summary = run_flow(src, tmp_path / "out", "helpers:fail_file1_once", policy, retries=1)
    assert state.is_completed(), summary
    assert summary["shards_skipped"] == 3 and summary["shards_done"] == 4
    assert sorted(read_dir(tmp_path / "out" / "data")["id"]) == list(range(400))
    with get_client(sync_client=True) as client:
        [run] = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[summary["flow_run_id"]])))
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
    assert run.run_count == 2
    states = sorted(t.state.name for t in task_runs)
    assert states.count("Cached") == 3 and states.count("Failed") == 1, states


def test_a_writer_killed_mid_write_leaves_no_visible_partial_file(run_flow, tmp_path):
    src = write_numbered_files(tmp_path / "in", 3, 100)
    policy = write_policy(tmp_path / "p.toml", SLOW + "inject_kill_mid_write_once = true\n")
    state, summary = run_flow(src, tmp_path / "out", "tasks.examples:passthrough", policy)
    assert state.is_completed(), summary
    assert summary["retries"] >= 1
    assert len(list((tmp_path / "out" / "_rayft" / "faults").rglob("killed-mid-write"))) == 1
    assert sorted(read_dir(tmp_path / "out" / "data")["id"]) == list(range(300))
    assert_every_visible_file_readable(tmp_path / "out")


def test_the_cache_key_follows_transform_source_policy_and_input(tmp_path, monkeypatch):
    """An edited transform, a result-relevant policy field or a changed input file makes a new key;
    an execution knob does not."""
    import os
    from blocks.policy import FaultPolicy
    from flows.planning import plan_job
    from tasks.shard import shard_key, transform_fingerprint
    module = tmp_path / "my_rules.py"
    module.write_text("def clean(df):\n    return df\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    src = write_numbered_files(tmp_path / "in", 1, 10)
    policy = FaultPolicy()

    def key(shard_policy=policy):
        plan = plan_job(str(src), policy)
        job = {"transform": "my_rules:clean", "transform_fingerprint": transform_fingerprint("my_rules:clean"),
               "policy_fingerprint": shard_policy.fingerprint(), "dest": str(tmp_path / "out")}
        return shard_key(plan.shards[0], job)
    first = key()
    assert key() == first and key(FaultPolicy(max_concurrent_shards=7, shard_retries=5)) == first
    assert key(FaultPolicy(data_quality="flag")) != first
    module.write_text("def clean(df):\n    return df.assign(edited=True)\n")
    edited = key()
    assert edited != first
    (src / "file0.csv").write_text("id,value\n" + "".join(f"{i},{i}\n" for i in range(11)))
    os.utime(src / "file0.csv", ns=(1, 1))
    assert key() not in (first, edited)


def test_a_changed_policy_reruns_committed_shards(run_flow, tmp_path):
    src = write_numbered_files(tmp_path / "in", 2, 20)
    dest = tmp_path / "out"
    runs = [run_flow(src, dest, "tasks.examples:passthrough", policy)[1] for policy in (
        None, None, write_policy(tmp_path / "p.toml", 'data_quality = "flag"\n'))]
    assert [r["shards_skipped"] for r in runs] == [0, 2, 0]
    assert all(r["rows_written"] == 40 for r in runs)


@pytest.mark.slow
def test_ctrl_c_exits_130_at_once_keeps_committed_shards_and_leaves_nothing_running(tmp_path):
    """SIGINT to the whole process group, as a terminal's Ctrl-C sends it: the temporary Prefect server
    must outlive it long enough for the flow run to report (it used to die first: minutes of retries)."""
    import os
    import signal
    src = write_numbered_files(tmp_path / "in", 8, 200)
    policy = write_policy(tmp_path / "p.toml", SLOW)
    dest = tmp_path / "out"
    run = CliProcess("run", str(src), str(dest), "--transform", "helpers:slow_passthrough", "--policy",
                     str(policy), "--json", env={"PYTHONPATH": str(Path(__file__).parent)})
    deadline = time.monotonic() + 300
    # Two shards run at a time: a third one committed means the flow has had at least one result.
    while committed(dest) < 3 and time.monotonic() < deadline and run.proc.poll() is None:
        time.sleep(0.05)
    assert run.proc.poll() is None, run.proc.communicate()[1][-3000:]
    os.killpg(run.proc.pid, signal.SIGINT)
    interrupted = time.monotonic()
    try:
        out, err = run.proc.communicate(timeout=120)
    finally:
        exited = time.monotonic() - interrupted
        left = run.descendants()
        run.kill_all()
    assert run.proc.returncode == 130, err[-3000:]
    assert exited < 30, exited   # measured 3-4 s; before the fix 155-300 s
    assert left == [], left
    assert "run the same command again to resume" in err
    summary = json.loads((dest / "_rayft" / "summary.json").read_text())
    assert json.loads(out) == summary   # --json prints it
    assert summary["status"] == "failed" and summary["message"].startswith("interrupted (Ctrl-C)")
    assert summary["shards_total"] == 8 and 1 <= summary["shards_done"] <= committed(dest) < 8, summary
    # The ledger of the shards it got: 200 rows a shard, all written.
    assert summary["rows_in"] == summary["rows_written"] == 200 * summary["shards_done"], summary
    assert not (dest / "data").exists()   # nothing published by the interrupted run
