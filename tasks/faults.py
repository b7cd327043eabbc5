"""Fault injection users can switch on to test their own pipeline's tolerance.

Policy fields `inject_transient_rate` / `inject_kill_once`, or the environment (which wins):

    RAYFT_FAULTS='{"transient_rate": 0.2, "kill_once": true}' rayft run ...

- transient_rate: each block attempt raises `InjectedTransientError` (a ConnectionError, so the
  default retry_exceptions retry it) with this probability.
- kill_once: the first block of the run kills its worker process (`os._exit`), once per run: a task-pool
  worker or a pool actor, whichever runs it. Ray restarts it and retries the block.
- kill_mid_write_once: the first block of the run writes half of its data file, then kills its worker.
"""

from __future__ import annotations

import json
import os
import random

from tasks.storage import create_once


class InjectedTransientError(ConnectionError):
    """A fault injected on purpose (rayft fault injection)."""


def settings(policy_faults: tuple[tuple[str, object], ...]) -> dict:
    env = os.environ.get("RAYFT_FAULTS")
    return json.loads(env) if env else dict(policy_faults)


def inject(faults: tuple[tuple[str, object], ...], marker_dir: str) -> None:
    """Called at the start of each block attempt."""
    config = settings(faults)
    if not config:
        return
    if config.get("kill_once") and create_once(f"{marker_dir}/killed-once"):
        os._exit(17)
    rate = float(config.get("transient_rate", 0))
    if rate and random.random() < rate:
        raise InjectedTransientError(f"injected transient fault (rate {rate})")


def write_or_die(faults: tuple[tuple[str, object], ...], marker_dir: str, uri: str, payload: bytes) -> None:
    """kill_mid_write_once: leave a truncated file where the block's data goes, then die."""
    if settings(faults).get("kill_mid_write_once") and create_once(f"{marker_dir}/killed-mid-write"):
        from tasks.storage import split_uri
        fs, path = split_uri(uri)
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(path) as f:
            f.write(payload[: len(payload) // 2])
        os._exit(18)
