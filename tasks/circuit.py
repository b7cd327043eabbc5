"""A circuit breaker for transforms that call an outside dependency.

    from tasks.circuit import CircuitBreaker
    geo = CircuitBreaker("geocoder", failures=5, reset_seconds=30)

    def enrich(df):
        df["zip"] = [geo.call(lookup, address) for address in df["address"]]
        return df

After `failures` consecutive failures the breaker opens: calls fail at once with `CircuitOpenError` (a
ConnectionError, so it is retried as transient) for `reset_seconds`; then one trial call is let through
(half-open): success closes it, failure opens it again. State lives in each worker process; every block
reports its breakers' trips, which the run sums into `circuit_breakers` in the summary and artifacts.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

_REGISTRY: dict[str, "CircuitBreaker"] = {}


class CircuitOpenError(ConnectionError):
    """The breaker is open: the dependency is failing; not called."""


class CircuitBreaker:
    def __new__(cls, name: str, failures: int = 5, reset_seconds: float = 30.0):
        # One breaker per name and process, so that every batch in a worker shares its state.
        existing = _REGISTRY.get(name)
        if existing is not None:
            return existing
        breaker = super().__new__(cls)
        _REGISTRY[name] = breaker
        return breaker

    def __init__(self, name: str, failures: int = 5, reset_seconds: float = 30.0) -> None:
        if getattr(self, "name", None) == name:
            return
        self.name, self.failures, self.reset_seconds = name, failures, reset_seconds
        self.state, self.consecutive, self.opened_at, self.trips, self.rejected = "closed", 0, 0.0, 0, 0
        self._lock = threading.Lock()

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            if self.state == "open":
                if time.monotonic() - self.opened_at < self.reset_seconds:
                    self.rejected += 1
                    raise CircuitOpenError(f"circuit {self.name!r} is open after {self.failures} failures")
                self.state = "half_open"
        try:
            result = fn(*args, **kwargs)
        except Exception:
            with self._lock:
                self.consecutive += 1
                if self.state == "half_open" or self.consecutive >= self.failures:
                    if self.state != "open":
                        self.trips += 1
                    self.state, self.opened_at = "open", time.monotonic()
            raise
        with self._lock:
            self.state, self.consecutive = "closed", 0
        return result


def snapshot() -> dict[str, dict]:
    return {name: {"state": b.state, "trips": b.trips, "rejected": b.rejected} for name, b in _REGISTRY.items()}


def delta(before: dict[str, dict], after: dict[str, dict]) -> dict[str, dict]:
    """What happened to each breaker during one block."""
    out = {}
    for name, now in after.items():
        was = before.get(name, {"trips": 0, "rejected": 0})
        out[name] = {"state": now["state"], "trips": now["trips"] - was["trips"],
                     "rejected": now["rejected"] - was["rejected"]}
    return out
