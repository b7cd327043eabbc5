"""Prefect on PostgreSQL (Debian's package): a real server on loopback, a Prefect server on it, one run."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from processes import PrefectServer, run_transactions_against
from test_deployments import Api

PG_BINS = sorted(Path("/usr/lib/postgresql").glob("*/bin"))


def as_postgres(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True,
                          check=True, **kwargs)


@pytest.fixture
def postgres():
    bin_dir = PG_BINS[-1]
    data = Path(tempfile.mkdtemp(prefix="pg", dir="/tmp"))
    shutil.chown(data, "postgres", "postgres")
    as_postgres(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(["runuser", "-u", "postgres", "--", str(bin_dir / "postgres"), "-D", str(data),
                               "-h", "127.0.0.1", "-p", str(port), "-k", str(data)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(100):
            if subprocess.run([str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.2)
        as_postgres(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "prefect")
        yield port, bin_dir
    finally:
        os.killpg(server.pid, signal.SIGINT)   # the postmaster's fast shutdown, for the group we started
        server.wait(timeout=60)
        shutil.rmtree(data, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.skipif(not PG_BINS or shutil.which("runuser") is None, reason="PostgreSQL is installed by .ci/run")
def test_a_flow_runs_through_prefect_on_postgresql(postgres, tmp_path):
    port, bin_dir = postgres
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/prefect"
    server = PrefectServer(tmp_path / "home", {"PREFECT_API_DATABASE_CONNECTION_URL": url})
    try:
        server.wait_healthy()
        summary = run_transactions_against(server.api_url, tmp_path)
        run = Api(server.api_url)("GET", f"/flow_runs/{summary['flow_run_id']}")
        assert run["state"]["type"] == "COMPLETED"
    finally:
        server.stop()
    rows = as_postgres(str(bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-d", "prefect", "-tAc",
                       f"select state_type from flow_run where id = '{summary['flow_run_id']}'").stdout.strip()
    assert rows == "COMPLETED"   # the run lives in PostgreSQL, not in a SQLite file
    assert not list((tmp_path / "home").glob("*.db"))
