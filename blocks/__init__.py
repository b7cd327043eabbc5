"""Prefect Block types: the fault-tolerance policy users edit in the Prefect UI."""

from blocks.policy import FaultPolicy, PolicyError, load_policy

__all__ = ["FaultPolicy", "PolicyError", "load_policy"]
