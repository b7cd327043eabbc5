"""The same flow on an existing Ray cluster: `ray start --head` on loopback, and a two-node cluster
that loses its worker node mid-run. Tests stop only what they started (by pid)."""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

import pytest

from helpers import read_dir, write_numbered_files, write_policy, write_transactions
from processes import CliProcess, MarkedProcess

HERE = Path(__file__).parent


@pytest.mark.slow
def test_run_on_an_existing_head_started_with_ray_start(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray_bin = str(Path(sys.executable).parent / "ray")
    head = MarkedProcess([ray_bin, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
                          "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats", "--block"])
    try:
        time.sleep(2)
        src = write_transactions(tmp_path / "tx.csv")
        policy = write_policy(tmp_path / "p.toml", f'max_error_rate = 0.9\nray_address = "127.0.0.1:{port}"\n')
        # Same RAY_TMPDIR as the head: the driver finds the cluster's auth token and session there.
        code, out, err = None, "", ""
        for _ in range(30):   # the head takes a few seconds to accept drivers
            run = CliProcess("run", str(src), str(tmp_path / "out"), "--transform", "tasks.examples:transactions",
                             "--policy", str(policy), "--json",
                             env={"RAY_AUTH_MODE": "token", "RAY_TMPDIR": head.ray_tmp})
            code, out, err = run.wait()
            if code == 0 or "Connecting" not in err:
                break
            time.sleep(1)
        assert code == 0, err[-3000:]
        summary = json.loads(out)
        assert (summary["rows_in"], summary["rows_written"], summary["rows_quarantined"]) == (8, 3, 5)
        assert "Connecting to an existing Ray instance" in err
        assert head.proc.poll() is None   # our run did not stop the cluster it joined
    finally:
        head.kill_all()
    assert head.descendants() == []


@pytest.mark.slow
def test_worker_node_removed_mid_run_loses_and_duplicates_nothing(tmp_path):
    src = write_numbered_files(tmp_path / "in", 6, 100)
    policy = write_policy(tmp_path / "p.toml", "max_concurrent_shards = 2\nshard_retry_delay_seconds = 0\n")
    proc = MarkedProcess([sys.executable, str(HERE / "cluster_run.py"), str(src), str(tmp_path / "out"),
                          str(policy)], env={"PYTHONPATH": str(HERE)})
    code, out, err = proc.wait(timeout=600)
    assert code == 0, err[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["removed_at"] is not None and summary["removed_at"] < 6
    assert summary["state"] == "COMPLETED" and summary["status"] == "completed", summary
    assert summary["rows_in"] == summary["rows_written"] + summary["rows_quarantined"] + summary["rows_dropped"]
    ids = list(read_dir(tmp_path / "out" / "data")["id"])
    assert sorted(ids) == list(range(600)) and len(ids) == len(set(ids))
