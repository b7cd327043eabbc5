"""A Prefect API for the CLI: PREFECT_API_URL if set, else one temporary local server for this process.

Started once here, not per Ray worker: workers inherit PREFECT_API_URL and report to the same server.
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Iterator


@contextlib.contextmanager
def prefect_api() -> Iterator[str]:
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")   # no network here; no noise
    server = SubprocessASGIServer()
    # Ctrl-C in a terminal signals the whole process group. Started with SIGINT blocked (as Ray starts its
    # own processes), the server outlives the interrupt, the flow run is reported Crashed, and the server
    # is stopped below. Otherwise the engine retries a dead API for minutes before it exits.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        server.start(timeout=120)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)   # a Ctrl-C meanwhile is delivered here
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        # No flow-run heartbeats for a server that lives and dies with this process: nothing can act on
        # them (they feed zombie-run automations), and the engine waits up to 1 s for the heartbeat
        # thread's sleep to end when a run finishes (0.7 s of a 0.5 s flow, measured).
        with temporary_settings({PREFECT_API_URL: server.api_url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            yield server.api_url
    finally:
        from prefect.logging.handlers import APILogWorker
        APILogWorker.drain_all(timeout=5)   # send the last logs while the server is still up
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()
