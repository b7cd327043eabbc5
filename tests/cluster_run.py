"""Run the main flow on a two-node in-process Ray cluster and remove the worker node mid-run.

    python tests/cluster_run.py SOURCE DEST POLICY     (prints the summary as JSON on the last line)
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    source, dest, policy = sys.argv[1:4]
    import ray
    from ray.cluster_utils import Cluster
    from blocks.policy import FaultPolicy
    from flows.pipeline import etl, task_runner
    from flows.prefect_api import prefect_api

    with prefect_api() as url:
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                                "env_vars": {"PREFECT_API_URL": url}})
        worker = cluster.add_node(num_cpus=2, env_vars={"PREFECT_API_URL": url})
        ray.init(address=cluster.address, runtime_env={"env_vars": {"PREFECT_API_URL": url,
                                                                     "PYTHONPATH": str(Path(__file__).parent)}})
        removed = {}

        def remove_worker_when_half_done():
            shards = Path(dest) / "_rayft" / "shards"
            while len(list(shards.glob("*/*/COMMITTED.json"))) < 2:
                time.sleep(0.05)
            cluster.remove_node(worker)
            removed["at"] = len(list(shards.glob("*/*/COMMITTED.json")))

        threading.Thread(target=remove_worker_when_half_done, daemon=True).start()
        state = etl.with_options(task_runner=task_runner(FaultPolicy()))(
            source=source, dest=dest, transform="helpers:slow_passthrough", policy=policy, return_state=True)
        summary = json.loads((Path(dest) / "_rayft" / "summary.json").read_text())
        summary["removed_at"] = removed.get("at")
        summary["state"] = state.type.value
        ray.shutdown()
        cluster.shutdown()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
