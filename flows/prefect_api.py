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
    from prefect.settings import PREFECT_API_URL, temporary_settings

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
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        from prefect.logging.handlers import APILogWorker
        APILogWorker.drain_all(timeout=5)   # send the last logs while the server is still up
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()
