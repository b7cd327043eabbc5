"""Prefect flows of prefect-ray-ft: the main ETL flow (plan shards, resume, artifacts)."""

from flows.pipeline import JobFailed, etl

__all__ = ["JobFailed", "etl"]
