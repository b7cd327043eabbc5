"""Start the rayft CLI in its own process group and stop exactly what it started, by pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path


class CliProcess:
    def __init__(self, *args: str, env: dict | None = None) -> None:
        self.mark = uuid.uuid4().hex
        self.ray_tmp = tempfile.mkdtemp(prefix="rft", dir="/tmp")   # short: Ray's socket paths
        environ = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        environ.update(env or {}, RAYFT_TEST_MARK=self.mark, RAY_TMPDIR=self.ray_tmp)
        self.proc = subprocess.Popen([sys.executable, "-m", "flows.cli", *args], env=environ,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)

    def descendants(self) -> list[int]:
        """Every process that carries this run's mark in its environment (Ray, the Prefect server, ...)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if f"RAYFT_TEST_MARK={self.mark}".encode() in (entry / "environ").read_bytes():
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
        for pid in self.descendants():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def wait(self, timeout: float = 600) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        for pid in self.descendants():   # nothing of ours may outlive the run
            os.kill(pid, signal.SIGKILL)
        return self.proc.returncode, out, err
