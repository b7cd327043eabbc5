"""The fault-tolerance policy: one frozen, validated value, editable in the Prefect UI as a Block.

    from blocks import FaultPolicy, load_policy
    FaultPolicy(max_error_rate=0.01, retry_exceptions=["ConnectionError"]).save("strict")
    policy = load_policy("strict")          # a saved Block name ...
    policy = load_policy("policy.toml")     # ... or a TOML/JSON file with the same fields

Every field says its default and the Ray or Prefect setting it becomes; `blocks.runtime` is the one place
that turns a policy into those settings.
"""

from __future__ import annotations

import builtins
import importlib
import json
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator
from prefect.blocks.core import Block

ERROR_CLASSES = ("data_quality", "schema_mismatch", "business_rule", "system_error")
ROW_ACTIONS = ("quarantine", "default", "flag", "fail")


class PolicyError(ValueError):
    """A policy that cannot be used; raised before any work starts (CLI exit code 2)."""


def resolve_exception(name: str) -> type[BaseException]:
    """`"ConnectionError"` (a builtin) or `"package.module.ClassName"` -> the exception class."""
    if "." not in name:
        found = getattr(builtins, name, None)
    else:
        module, _, attr = name.rpartition(".")
        try:
            found = getattr(importlib.import_module(module), attr, None)
        except ImportError:
            found = None
    if not (isinstance(found, type) and issubclass(found, BaseException)):
        raise ValueError(f"unknown exception {name!r} (use a builtin name or module.ClassName)")
    return found


class FaultPolicy(Block):
    """How prefect-ray-ft treats bad rows, failing tasks, errored blocks and failed shards."""

    _block_type_name = "Ray FT Policy"
    _block_type_slug = "rayft-policy"
    _description = "Fault-tolerance policy of prefect-ray-ft: row handling, retries, errored-block budget."
    # strict: `max_error_rate = true` or "0.5" is an error, not 1.0 or 0.5 (an int still counts as a float)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    # Level 1: rows
    max_error_rate: float = Field(
        0.05, allow_inf_nan=False, ge=0, le=1,
        description="Fraction of rows_in that may be quarantined before the job fails (exit 1). Default 0.05.")
    warn_error_rate: float = Field(
        0.01, allow_inf_nan=False, ge=0, le=1,
        description="Error rate above which the run emits a `rayft.error-rate.warning` Prefect event "
        "(capped at max_error_rate). Default 0.01.")
    data_quality: Literal["quarantine", "default", "flag", "fail"] = Field(
        "quarantine", description="Action for data_quality rows (ValueError, TypeError, parse errors): "
        "quarantine (default), default (fill `default_values` and retry the row), flag (write with "
        "`_flag_class`/`_flag_message`), fail (stop the job).")
    schema_mismatch: Literal["quarantine", "default", "flag", "fail"] = Field(
        "quarantine", description="Action for schema_mismatch rows (KeyError, type conversion). Default quarantine.")
    business_rule: Literal["quarantine", "default", "flag", "fail"] = Field(
        "quarantine", description="Action for business_rule rows (BusinessRuleError). Default quarantine.")
    default_values: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Column -> value filled into null cells of a row whose class "
        "action is `default`; the row is then run through the transform once more. Default {}.")

    # Level 2: retries
    retry_exceptions: list[str] = Field(
        default_factory=lambda: ["ConnectionError", "TimeoutError"],
        description="Exception classes treated as transient: Ray `retry_exceptions` of the map tasks "
        "(bounded by max_task_retries), and the Prefect shard retry condition. Names are builtins or "
        "module.Class. Default [ConnectionError, TimeoutError].")
    max_task_retries: int = Field(
        3, ge=0, description="Ray retries of a failed map task (`max_retries` for task pools, "
        "`max_task_retries` for actor pools). Always bounded: Ray's -1 would retry a deterministic error "
        "listed in retry_exceptions forever. Default 3.")
    max_restarts: int = Field(
        3, ge=0, description="Ray `max_restarts` of a crashed actor in an actor pool (bounded, like "
        "max_task_retries). Default 3.")
    max_map_retries: int = Field(
        0, ge=0, description="Ray DataContext `max_map_retries`: retries of the transform inside the same "
        "task for errors matching `retried_map_errors`. Default 0.")
    retried_map_errors: list[str] = Field(
        default_factory=list, description="Ray DataContext `retried_map_errors`: 'ExcType: message' "
        "patterns retried in-task. Default [].")
    retried_io_errors: list[str] = Field(
        default_factory=list, description="Error-message patterns of transient I/O errors, added to "
        "Ray's DataContext `retried_io_errors` (five AWS errors by default) and applied to our own reads "
        "and the Parquet schema read. Default [].")
    io_retry_attempts: int = Field(
        5, ge=1, description="Attempts of a read or commit whose error matches retried_io_errors. Default 5.")
    shard_retries: int = Field(
        2, ge=0, description="Prefect `retries` of a shard task; only errors named in retry_exceptions "
        "are retried (`retry_condition_fn`). Default 2.")
    shard_retry_delay_seconds: float = Field(
        1.0, allow_inf_nan=False, ge=0, description="Base of the Prefect shard retry backoff (`exponential_backoff`), "
        "capped at 60 s, jitter factor 0.5. Default 1.")

    # Level 3: blocks
    max_errored_blocks: int = Field(
        0, ge=-1, description="Ray DataContext `max_errored_blocks`: failed read/map tasks the job may "
        "drop (-1 = unlimited). Dropped rows are counted (`rows_dropped`) and quarantined as "
        "dropped_block. Default 0.")
    max_errored_block_fraction: float = Field(
        1.0, allow_inf_nan=False, ge=0, le=1, description="In addition, errored blocks may not exceed this fraction of all "
        "blocks. Default 1.0 (no extra limit).")

    # Level 4: shards and execution
    shard_bytes: int = Field(
        32 * 2**20, ge=1024, description="Uncompressed CSV/JSON-lines files are split at line boundaries "
        "into shards of about this many bytes; a shard is the unit of Prefect task, commit and resume. "
        "Each shard costs about 0.2-0.4 s of orchestration, so smaller shards resume finer but run "
        "slower. Default 32 MiB.")
    block_bytes: int = Field(
        4 * 2**20, ge=1024, description="Each shard is read as Ray Data blocks of about this many bytes; "
        "a block is the unit of Ray retries and of the errored-block budget. Default 4 MiB.")
    max_concurrent_shards: int = Field(
        2, ge=1, description="Shard tasks running at once on the RayTaskRunner. At most "
        "max_concurrent_shards x (shard_bytes / block_bytes) block tasks run at once: raise it on a "
        "cluster. Default 2.")
    compute: Literal["tasks", "actors"] = Field(
        "tasks", description="Ray Data compute for the transform: a task pool, or an ActorPoolStrategy "
        "(`actor_pool_size` actors) for transforms with costly set-up. Default tasks.")
    actor_pool_size: int = Field(2, ge=1, description="Actors in the pool when compute = actors. Default 2.")
    ray_address: str | None = Field(
        None, description="Ray cluster to run on (`RayTaskRunner(address=)`): None starts a local "
        "instance; 'auto', 'host:port' or 'ray://host:port' join an existing one. Default None.")

    # Fault injection (for testing a pipeline's tolerance; RAYFT_FAULTS in the environment wins)
    inject_transient_rate: float = Field(
        0.0, allow_inf_nan=False, ge=0, le=1, description="Probability that a block attempt raises an injected ConnectionError. "
        "Default 0.")
    inject_kill_once: bool = Field(
        False, description="Kill the worker (or actor) process running the first block, once per run. "
        "Default false.")

    inject_kill_mid_write_once: bool = Field(
        False, description="The first block of the run writes half its data file, then kills its worker, "
        "once per run. Default false.")

    s3_credentials: str | None = Field(
        None, description="Name of a saved S3Credentials Block for s3:// SOURCE and DEST; the secret "
        "travels to Ray workers inside the job, never in logs, artifacts or the environment. Default: "
        "credentials from the environment (AWS_*).")

    # Artifacts
    sample_rows: int = Field(
        5, ge=0, le=50, description="Sample quarantined rows per error class shown in artifacts. Default 5.")
    redact_columns: list[str] = Field(
        default_factory=list, description="Columns whose values are replaced by '***' in artifact "
        "samples. Default [].")

    @field_validator("retry_exceptions")
    @classmethod
    def _known_exceptions(cls, names: list[str]) -> list[str]:
        for name in names:
            resolve_exception(name)
        return names

    def action_for(self, error_class: str) -> str:
        return getattr(self, error_class) if error_class in ROW_ACTIONS_FIELDS else "escalate"

    def flags_rows(self) -> bool:
        return "flag" in (self.data_quality, self.schema_mismatch, self.business_rule)

    def exception_classes(self) -> tuple[type[BaseException], ...]:
        return tuple(resolve_exception(n) for n in self.retry_exceptions)

    def to_json(self) -> str:
        """The policy's own fields (no Block metadata), as `from_json` reads them back."""
        return json.dumps(self.model_dump(mode="json", include=set(FaultPolicy.model_fields) - BLOCK_FIELDS))

    @classmethod
    def from_json(cls, text: str) -> "FaultPolicy":
        return cls(**json.loads(text))

    def fingerprint(self) -> str:
        """Fields that change results; part of the shard cache key (execution knobs are left out)."""
        keep = {k: v for k, v in self.model_dump(mode="json").items() if k in RESULT_FIELDS}
        return json.dumps(keep, sort_keys=True)


BLOCK_FIELDS = set(Block.model_fields)
ROW_ACTIONS_FIELDS = ("data_quality", "schema_mismatch", "business_rule")
RESULT_FIELDS = {"data_quality", "schema_mismatch", "business_rule", "default_values",
                 "max_errored_blocks", "max_errored_block_fraction", "shard_bytes", "block_bytes"}


def policy_from_mapping(values: dict, origin: str) -> FaultPolicy:
    try:
        return FaultPolicy(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "policy"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown policy field"
        raise PolicyError(f"{origin}: {field}: {msg}") from None


def load_policy(name_or_file: str | None) -> FaultPolicy:
    """None -> defaults; an existing .toml/.json file -> parsed and validated; otherwise a saved Block."""
    if not name_or_file:
        return FaultPolicy()
    path = Path(name_or_file)
    if path.suffix in (".toml", ".json") or path.exists():
        if not path.is_file():
            raise PolicyError(f"policy file not found: {name_or_file}")
        try:
            text = path.read_text()
            values = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PolicyError(f"{name_or_file}: cannot parse policy: {exc}") from None
        if not isinstance(values, dict):
            raise PolicyError(f"{name_or_file}: a policy is a table of fields")
        return policy_from_mapping(values, str(path))
    try:
        return FaultPolicy.load(name_or_file)
    except ValueError as exc:
        raise PolicyError(f"no policy file or saved policy Block named {name_or_file!r} ({exc})") from None
