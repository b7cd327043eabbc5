"""Benchmark transforms: the flights rules plus CPU work, to stand for a heavy real transform."""

from __future__ import annotations

import time

from tasks.examples import flights


def flights_heavy(df):
    """flights, plus about 0.3 s of CPU per 10,000 rows (a stand-in for a costly model or lookup)."""
    deadline = time.process_time() + 0.3 * len(df) / 10_000
    while time.process_time() < deadline:
        pass
    return flights(df)
