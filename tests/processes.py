"""Start the rayft CLI in its own process group and stop exactly what it started, by pid."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path


class MarkedProcess:
    """A process group of ours; everything it starts (Ray, servers) inherits a unique mark."""

    def __init__(self, argv: list[str], env: dict | None = None, keep_api_url: bool = False) -> None:
        self.mark = uuid.uuid4().hex
        self.ray_tmp = tempfile.mkdtemp(prefix="rft", dir="/tmp")   # short: Ray's socket paths
        environ = {k: v for k, v in os.environ.items() if keep_api_url or k != "PREFECT_API_URL"}
        environ.update(RAYFT_TEST_MARK=self.mark, RAY_TMPDIR=self.ray_tmp)
        environ.update(env or {})
        self.proc = subprocess.Popen(argv, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True)

    def descendants(self) -> list[int]:
        """Every process that carries this run's mark in its environment (Ray, the Prefect server, ...)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if (f"RAYFT_TEST_MARK={self.mark}".encode() in (entry / "environ").read_bytes()
                        and (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"):
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

    def kill_all(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        for _ in range(50):   # processes that left the group (Ray daemons): by pid, until none is alive
            left = self.descendants()
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)

    def wait(self, timeout: float = 600) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        self.kill_all()   # nothing of ours may outlive the run
        return self.proc.returncode, out, err


class CliProcess(MarkedProcess):
    def __init__(self, *args: str, env: dict | None = None) -> None:
        super().__init__([sys.executable, "-m", "flows.cli", *args], env)


class PrefectServer:
    """`prefect server start` on a free loopback port with its own PREFECT_HOME (UI included)."""

    def __init__(self, home: Path, extra_env: dict | None = None) -> None:
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        api = f"http://127.0.0.1:{self.port}/api"
        # The UI calls the API at PREFECT_UI_API_URL (default port 4200), not at the port it serves on.
        self.env.update(PREFECT_HOME=str(home), PREFECT_API_URL=api, PREFECT_UI_API_URL=api,
                        PREFECT_SERVER_ANALYTICS_ENABLED="false", **(extra_env or {}))
        home.mkdir(parents=True, exist_ok=True)
        self.log = home / "server.log"
        self.proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                      "--port", str(self.port)], env=self.env, stdout=open(self.log, "w"),
                                     stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def api_url(self) -> str:
        return self.env["PREFECT_API_URL"]

    def wait_healthy(self, timeout: float = 180) -> None:
        import urllib.request
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(self.api_url + "/health", timeout=2)
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(self.log.read_text()[-3000:])
                time.sleep(0.5)

    def stop(self) -> None:
        stop_group(self.proc)


def stop_group(proc: subprocess.Popen) -> None:
    """SIGINT (Prefect's clean stop), then the process group we created."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_transactions_against(api_url: str, folder: Path) -> dict:
    """`rayft run` of the messy transactions example, recorded on the Prefect API at api_url."""
    from helpers import write_policy, write_transactions
    src = write_transactions(folder / "tx.csv")
    policy = write_policy(folder / "p.toml", "max_error_rate = 0.9\n")
    code, out, err = MarkedProcess(
        [sys.executable, "-m", "flows.cli", "run", str(src), str(folder / "out"), "--transform",
         "tasks.examples:transactions", "--policy", str(policy), "--json"],
        env={"PREFECT_API_URL": api_url}, keep_api_url=True).wait()
    assert code == 0, err[-3000:]
    return json.loads(out)
