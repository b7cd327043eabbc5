"""The job-wide checks: errored-block budget as a count and as a fraction, and the order of reasons."""

from __future__ import annotations

import pytest

from blocks.policy import FaultPolicy
from flows.summary import errored_block_budget, failure_reason


@pytest.mark.parametrize("count, fraction, blocks, budget", [
    (0, 1.0, 20, 0),      # the default: no block may be dropped
    (3, 1.0, 20, 3),
    (-1, 1.0, 20, -1),    # unlimited
    (5, 0.1, 20, 2),      # the smaller of count and fraction
    (-1, 0.25, 20, 5),    # unlimited count, bounded by the fraction
    (1, 0.01, 20, 0),
])
def test_errored_block_budget(count, fraction, blocks, budget):
    policy = FaultPolicy(max_errored_blocks=count, max_errored_block_fraction=fraction)
    assert errored_block_budget(policy, blocks) == budget


def summary(**figures) -> dict:
    base = {"rows_in": 100, "rows_written": 90, "rows_quarantined": 0, "rows_dropped": 10, "rows_filtered": 0,
            "errored_blocks": 3, "blocks_total": 20, "error_rate": 0.0, "shards_failed": {}}
    return {**base, **figures}


def test_the_fraction_fails_a_job_the_count_would_let_through():
    lenient = FaultPolicy(max_errored_blocks=-1)
    assert failure_reason(summary(), lenient) is None
    reason = failure_reason(summary(), FaultPolicy(max_errored_blocks=-1, max_errored_block_fraction=0.1))
    assert reason.startswith("3 errored blocks exceed the budget of 2")


def test_an_unbalanced_ledger_fails_even_within_every_budget():
    reason = failure_reason(summary(rows_written=89), FaultPolicy(max_errored_blocks=-1))
    assert reason.startswith("ledger does not balance") and "rows_written=89" in reason
