"""Prefect flows of prefect-ray-ft: the main ETL flow (plan shards, resume, artifacts)."""

from flows.etl import JobFailed, etl

__all__ = ["JobFailed", "etl"]
