"""Prefect tasks and the Ray Data work they do: reading blocks, the row guard, the shard task."""

from tasks.errors import BusinessRuleError, classify
from tasks.rejects import Rejects

__all__ = ["BusinessRuleError", "Rejects", "classify"]
