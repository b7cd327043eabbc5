"""One Prefect test server and one Ray instance for the whole session (2-core CI machines)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))   # test transforms (tests/helpers.py) importable here and on Ray workers


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory):
    from prefect.testing.utilities import prefect_test_harness
    from prefect.settings import PREFECT_API_URL
    with prefect_test_harness(server_startup_timeout=120):
        os.environ["PREFECT_API_URL"] = PREFECT_API_URL.value()
        yield PREFECT_API_URL.value()
        os.environ.pop("PREFECT_API_URL", None)


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory):
    """Shared by test transforms on Ray workers (RAYFT_TEST_STATE) to count attempts across processes."""
    path = tmp_path_factory.mktemp("transform-state")
    os.environ["RAYFT_TEST_STATE"] = str(path)
    return path


@pytest.fixture(scope="session")
def ray_session(prefect_api, state_dir):
    import ray
    from blocks.policy import FaultPolicy
    from blocks.runtime import ray_init_kwargs
    env = {"PREFECT_API_URL": prefect_api, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent)]),
           "RAYFT_TEST_STATE": str(state_dir)}
    ray.init(address="local", num_cpus=2, **ray_init_kwargs(FaultPolicy(), env, local=True))
    yield
    ray.shutdown()


@pytest.fixture
def run_flow(ray_session, state_dir):
    """Run the main flow in-process on the session's Ray; returns (state, summary)."""
    from blocks.policy import FaultPolicy
    from flows.pipeline import etl, task_runner
    from tasks.storage import join, read_json

    for child in state_dir.iterdir():   # attempt counters of test transforms start from zero
        shutil.rmtree(child)

    def run(source, dest, transform="tasks.examples:passthrough", policy=None, retries=0):
        state = etl.with_options(task_runner=task_runner(FaultPolicy()), retries=retries)(
            source=str(source), dest=str(dest), transform=transform,
            policy=str(policy) if policy else None, return_state=True)
        return state, read_json(join(str(dest), "_rayft", "summary.json"))
    return run
