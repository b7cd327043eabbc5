"""Operate it the Prefect way: a real server, `prefect deploy --all`, a process worker, a REST trigger."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_fixed

from helpers import write_policy, write_transactions
from processes import PrefectServer, stop_group

ROOT = Path(__file__).resolve().parent.parent
PREFECT = [sys.executable, "-m", "prefect"]


def _unavailable(exc: BaseException) -> bool:
    return isinstance(exc, urllib.error.HTTPError) and exc.code == 503


class Api:
    """The Prefect REST API as a user calls it. A server on SQLite answers 503 while its database is
    busy (several processes write to it here): such calls are retried, nothing else is."""

    def __init__(self, url: str) -> None:
        self.url = url

    @retry(retry=retry_if_exception(_unavailable), stop=stop_after_attempt(5), wait=wait_fixed(1), reraise=True)
    def __call__(self, method: str, path: str, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, method=method, data=data,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as response:
            return json.loads(response.read() or b"null")


@pytest.mark.slow
def test_deploy_trigger_over_rest_and_read_history_back(tmp_path):
    server = PrefectServer(tmp_path / "home")
    env = server.env
    logs = tmp_path / "logs"
    logs.mkdir()
    started = [server.proc]
    try:
        server.wait_healthy()
        api = Api(server.api_url)
        subprocess.run([*PREFECT, "work-pool", "create", "rayft-process", "--type", "process"], env=env,
                       check=True, capture_output=True)
        deployed = subprocess.run([*PREFECT, "--no-prompt", "deploy", "--all"], cwd=ROOT / "deployments",
                                  env=env, capture_output=True, text=True)
        assert deployed.returncode == 0, deployed.stdout[-2000:] + deployed.stderr[-2000:]
        worker = subprocess.Popen([*PREFECT, "worker", "start", "--pool", "rayft-process"], env=env,
                                  stdout=open(logs / "worker.log", "w"), stderr=subprocess.STDOUT,
                                  start_new_session=True)
        started.append(worker)

        deployment = api("GET", "/deployments/name/rayft-etl/etl")
        assert [s["active"] for s in deployment["schedules"]] == [False]   # paused by default
        src, dest = write_transactions(tmp_path / "tx.csv"), tmp_path / "out"
        policy = write_policy(tmp_path / "p.toml", "max_error_rate = 0.9\n")
        run = api("POST", f"/deployments/{deployment['id']}/create_flow_run", {"parameters": {
            "source": str(src), "dest": str(dest), "transform": "tasks.examples:transactions",
            "policy": str(policy)}})
        deadline = time.monotonic() + 300
        while (state := api("GET", f"/flow_runs/{run['id']}")["state"])["type"] not in (
                "COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            assert time.monotonic() < deadline, (logs / "worker.log").read_text()[-3000:]
            time.sleep(1)
        assert state["type"] == "COMPLETED", (logs / "worker.log").read_text()[-3000:]

        # The same deployment triggered from Python: run_deployment waits for the run to finish.
        from prefect.deployments import run_deployment
        from prefect.settings import PREFECT_API_URL, temporary_settings
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            second = run_deployment("rayft-etl/etl", timeout=300, parameters={
                "source": str(src), "dest": str(tmp_path / "out2"), "transform": "tasks.examples:transactions",
                "policy": str(policy)})
        assert second.state.is_completed(), (logs / "worker.log").read_text()[-3000:]

        history = api("POST", "/flow_runs/filter", {"deployments": {"id": {"any_": [deployment["id"]]}}})
        assert sorted(r["id"] for r in history) == sorted([run["id"], str(second.id)])
        assert all(r["state"]["type"] == "COMPLETED" for r in history)
        artifacts = {a["key"]: a for a in api("POST", "/artifacts/filter",
                                              {"artifacts": {"flow_run_id": {"any_": [run["id"]]}}})}
        assert {"rayft-summary", "rayft-error-classes"} <= set(artifacts)
        summary_md = artifacts["rayft-summary"]["data"]
        assert "rows_in | 8 |" in summary_md and "rows_written | 3 |" in summary_md
        assert "rows_quarantined | 5 |" in summary_md
        latest = api("GET", "/artifacts/rayft-summary/latest")
        assert latest["flow_run_id"] == str(second.id)
        assert json.loads((dest / "_rayft" / "summary.json").read_text())["flow_run_id"] == run["id"]
    finally:
        for proc in reversed(started):
            stop_group(proc)


@pytest.mark.slow
def test_rayft_serve_runs_a_triggered_flow_on_one_machine(prefect_api, tmp_path):
    from processes import MarkedProcess
    served = MarkedProcess([sys.executable, "-m", "flows.cli", "serve", "--cron", "0 4 * * *"],
                           env={"PREFECT_API_URL": prefect_api}, keep_api_url=True)
    try:
        api = Api(prefect_api)
        deadline = time.monotonic() + 120
        while True:
            try:
                deployment = api("GET", "/deployments/name/rayft-etl/etl")
                break
            except OSError:
                assert time.monotonic() < deadline and served.proc.poll() is None, served.proc.stderr.read()
                time.sleep(1)
        assert [(s["schedule"]["cron"], s["active"]) for s in deployment["schedules"]] == [("0 4 * * *", False)]
        src = write_transactions(tmp_path / "tx.csv")
        policy = write_policy(tmp_path / "p.toml", "max_error_rate = 0.9\n")
        run = api("POST", f"/deployments/{deployment['id']}/create_flow_run", {"parameters": {
            "source": str(src), "dest": str(tmp_path / "out"), "transform": "tasks.examples:transactions",
            "policy": str(policy)}})
        deadline = time.monotonic() + 300
        while (state := api("GET", f"/flow_runs/{run['id']}")["state"])["type"] not in (
                "COMPLETED", "FAILED", "CRASHED"):
            assert time.monotonic() < deadline
            time.sleep(1)
        assert state["type"] == "COMPLETED"
        assert json.loads((tmp_path / "out" / "_rayft" / "summary.json").read_text())["rows_written"] == 3
    finally:
        served.kill_all()
