"""The row guard: fast path, bisection, vectorised rejects and the per-class actions."""

from __future__ import annotations

import pandas as pd
import pytest

from blocks.policy import FaultPolicy
from blocks.runtime import row_rules
from tasks import BusinessRuleError, Rejects
from tasks.errors import FailFast
from tasks.guard import TransformContractError, guard


class Counting:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, df):
        self.calls += 1
        return self.fn(df)


def raise_on(bad_values, exc=ValueError):
    def transform(df):
        hit = df["x"].isin(bad_values)
        if hit.any():
            raise exc(f"bad x {df.loc[hit, 'x'].iloc[0]}")
        return df.assign(y=df["x"] * 2)
    return transform


def frame(n=64):
    return pd.DataFrame({"x": range(n)})


def test_clean_batch_calls_the_transform_once():
    t = Counting(raise_on([]))
    result = guard(t, frame(), row_rules(FaultPolicy()))
    assert t.calls == 1
    assert list(result.written["y"]) == [2 * i for i in range(64)]
    assert result.quarantined.empty and result.filtered == 0


def test_bisection_isolates_exactly_the_raising_rows():
    t = Counting(raise_on([5, 40]))
    result = guard(t, frame(), row_rules(FaultPolicy()))
    assert sorted(result.quarantined["x"]) == [5, 40]
    assert set(result.quarantined["_error_class"]) == {"data_quality"}
    assert result.quarantined.set_index("x").loc[5, "_error_message"] == "bad x 5"
    assert len(result.written) == 62 and not result.written["x"].isin([5, 40]).any()
    assert t.calls < 64 // 2   # logarithmic in the batch size, not one call per row


@pytest.mark.parametrize("exc, cls", [(KeyError, "schema_mismatch"), (BusinessRuleError, "business_rule"),
                                      (TypeError, "data_quality")])
def test_classification_of_raised_errors(exc, cls):
    result = guard(raise_on([3], exc), frame(8), row_rules(FaultPolicy()))
    assert list(result.quarantined["_error_class"]) == [cls]
    assert list(result.quarantined["_error_type"]) == [exc.__name__]


def test_system_error_is_reraised_for_the_retry_level():
    with pytest.raises(ConnectionError):
        guard(raise_on([3], ConnectionError), frame(8), row_rules(FaultPolicy()))


def test_vectorised_rejects_do_not_bisect():
    def transform(df):
        r = Rejects().add(df["x"] % 10 == 0, "business_rule", "multiple of ten", "Tens")
        return df.assign(y=1), r
    t = Counting(transform)
    result = guard(t, frame(35), row_rules(FaultPolicy()))
    assert t.calls == 1
    assert sorted(result.quarantined["x"]) == [0, 10, 20, 30]
    assert set(result.quarantined["_error_type"]) == {"Tens"}
    assert len(result.written) == 31


def test_flag_action_writes_rejected_rows_with_a_flag():
    def transform(df):
        return df.assign(y=1), Rejects().add(df["x"] == 2, "data_quality", "two")
    result = guard(transform, frame(4), row_rules(FaultPolicy(data_quality="flag")))
    assert result.quarantined.empty
    flags = result.written["_flag_class"]
    assert flags[2] == "data_quality" and flags.drop(index=2).isna().all()


def test_default_action_fills_values_and_retries_the_row():
    df = pd.DataFrame({"x": [1.0, None, 3.0]})

    def transform(d):
        if d["x"].isna().any():
            raise ValueError("x is null")
        return d.assign(y=d["x"] + 1)
    result = guard(transform, df, row_rules(FaultPolicy(data_quality="default", default_values={"x": 0})))
    assert result.quarantined.empty
    assert list(result.written.sort_index()["y"]) == [2.0, 1.0, 4.0]
    assert result.defaulted == 1   # counted: rows_defaulted in the summary


def test_fail_action_stops_the_job():
    with pytest.raises(FailFast, match="business_rule"):
        guard(raise_on([1], BusinessRuleError), frame(4), row_rules(FaultPolicy(business_rule="fail")))


def test_filtered_rows_are_counted_not_lost():
    result = guard(lambda df: df[df["x"] > 1], frame(5), row_rules(FaultPolicy()))
    assert len(result.written) == 3 and result.filtered == 2


def test_more_rows_out_than_in_is_refused_with_a_clear_error():
    with pytest.raises(TransformContractError, match="index"):
        guard(lambda df: pd.concat([df, df]), frame(5), row_rules(FaultPolicy()))
