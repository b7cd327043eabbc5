"""The policy: validated at load, one clear error, saved and loaded as a Prefect Block."""

from __future__ import annotations

import pytest

from blocks import FaultPolicy, PolicyError, load_policy
from blocks.runtime import apply_to_data_context, map_batches_args, shard_task_options
from helpers import write_policy


@pytest.mark.parametrize("text, field", [
    ('retry_exceptions = ["NoSuchError"]', "retry_exceptions"),
    ("max_errored_blocks = -5", "max_errored_blocks"),
    ("max_error_rate = 1.5", "max_error_rate"),
    ("bogus = 1", "bogus"),
    ('data_quality = "ignore"', "data_quality"),
    ("max_task_retries = -1", "max_task_retries"),   # unbounded retries are not allowed
    ("max_restarts = -1", "max_restarts"),
    ("max_error_rate = true", "max_error_rate"),       # not 1.0
    ("max_error_rate = nan", "max_error_rate"),
    ('shard_bytes = "32MiB"', "shard_bytes"),
])
def test_bad_policy_files_name_the_field(tmp_path, text, field):
    with pytest.raises(PolicyError, match=field) as info:
        load_policy(str(write_policy(tmp_path / "p.toml", text)))
    assert "\n" not in str(info.value)


def test_json_and_toml_give_the_same_policy(tmp_path):
    toml = write_policy(tmp_path / "p.toml", 'max_errored_blocks = -1\nretry_exceptions = ["OSError"]')
    json = write_policy(tmp_path / "p.json", '{"max_errored_blocks": -1, "retry_exceptions": ["OSError"]}')
    assert load_policy(str(toml)) == load_policy(str(json))
    assert load_policy(str(toml)).exception_classes() == (OSError,)


def test_translation_to_ray_and_prefect():
    from ray.data import DataContext
    policy = FaultPolicy(max_errored_blocks=2, retry_exceptions=["ConnectionError"], max_task_retries=4,
                         retried_io_errors=["flaky disk"], shard_retries=3)
    ctx = apply_to_data_context(policy, DataContext.get_current().copy())
    assert ctx.max_errored_blocks == 2
    assert "flaky disk" in ctx.retried_io_errors and "AWS Error SLOW_DOWN" in ctx.retried_io_errors
    assert ctx.actor_task_retry_on_errors == [ConnectionError]
    assert map_batches_args(policy) == {"max_retries": 4, "retry_exceptions": [ConnectionError]}
    actors = map_batches_args(FaultPolicy(compute="actors", max_restarts=1, max_task_retries=2))
    assert (actors["max_restarts"], actors["max_task_retries"]) == (1, 2)
    options = shard_task_options(policy)
    assert options["retries"] == 3 and options["retry_delay_seconds"] == [1.0, 2.0, 4.0]


def test_policy_block_round_trip(prefect_api):
    FaultPolicy(max_error_rate=0.2, retry_exceptions=["TimeoutError"]).save("strict-test", overwrite=True)
    loaded = load_policy("strict-test")
    assert loaded.max_error_rate == 0.2 and loaded.retry_exceptions == ["TimeoutError"]
    with pytest.raises(PolicyError, match="no-such-policy"):
        load_policy("no-such-policy")


def test_block_type_registers_for_the_ui_catalogue(prefect_api):
    import os
    import subprocess
    import sys
    from prefect.client.orchestration import get_client
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    result = subprocess.run([sys.executable, "-m", "prefect", "block", "register", "-m", "blocks.policy"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    with get_client(sync_client=True) as client:
        block_type = client.read_block_type_by_slug("rayft-policy")
        schema = client.get_most_recent_block_schema_for_block_type(block_type.id)
    assert block_type.name == "Ray FT Policy"
    fields = schema.fields["properties"]
    assert "max_errored_blocks" in fields and "Default 0" in fields["max_errored_blocks"]["description"]
