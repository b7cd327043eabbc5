"""Run a pandas transform over a batch so that bad rows are isolated and the good rows go through.

Fast path: one call on the whole batch; a clean batch pays only for the index check. Only a batch whose
call raises a row-level error (ValueError, TypeError, KeyError, BusinessRuleError) is bisected until the
rows responsible are found. A system error is re-raised for Ray's and Prefect's retries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pandas as pd

from tasks.errors import SYSTEM_ERROR, FailFast, classify, describe
from tasks.rejects import Rejects, empty_errors
from tasks.rules import RowRules

Transform = Callable[[pd.DataFrame], "pd.DataFrame | tuple[pd.DataFrame, Rejects]"]
FLAG_COLUMNS = ("_flag_class", "_flag_message")


class TransformContractError(Exception):
    """The transform returned rows that are not a subset of its input rows (by index)."""


@dataclass
class Guarded:
    written: pd.DataFrame       # output rows, indexed by input labels
    quarantined: pd.DataFrame   # input rows + _error_class/_error_type/_error_message, by input label
    filtered: int               # input rows the transform left out on purpose (not rejected)
    defaulted: int = 0          # rows written after the `default` action filled their nulls


def _call(transform: Transform, df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(output, rejected rows' errors, raised rows' errors) of one batch, bisecting on row errors."""
    try:
        result = transform(df)
    except Exception as exc:  # noqa: BLE001 - classified below; system errors re-raised
        error_class = classify(exc)
        if error_class == SYSTEM_ERROR:
            raise
        if len(df) <= 1:
            error_type, message = describe(exc)
            errors = pd.DataFrame({"_error_class": error_class, "_error_type": error_type,
                                   "_error_message": message}, index=df.index)
            return df.iloc[0:0], empty_errors(), errors
        mid = len(df) // 2
        left, right = _call(transform, df.iloc[:mid]), _call(transform, df.iloc[mid:])
        return tuple(_concat([a, b]) for a, b in zip(left, right))  # type: ignore[return-value]
    out, rejects = result if isinstance(result, tuple) else (result, None)
    if not isinstance(out, pd.DataFrame):
        raise TransformContractError(f"a transform returns a DataFrame, not {type(out).__name__}")
    if not out.index.is_unique or not out.index.isin(df.index).all():
        raise TransformContractError("the transform's output index must be a subset of its input index "
                                     "(one output row per kept input row; do not reset the index)")
    return out, rejects.frame() if rejects is not None else empty_errors(), empty_errors()


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)] or frames[:1]
    return pd.concat(frames) if len(frames) > 1 else frames[0]


def _fill_defaults(df: pd.DataFrame, rules: RowRules) -> pd.DataFrame:
    values = {k: v for k, v in rules.defaults.items() if k in df.columns}
    return df.fillna(value=values) if values else df


def guard(transform: Transform, df: pd.DataFrame, rules: RowRules) -> Guarded:
    out, rejected, raised = _call(transform, df)
    if rules.flags_rows():   # same columns in every file of the run, flagged rows or not
        out = out.assign(_flag_class=pd.Series(None, index=out.index, dtype=object),
                         _flag_message=pd.Series(None, index=out.index, dtype=object))
    errors = _concat([rejected, raised])
    if errors.empty:
        return Guarded(out, df.iloc[0:0].assign(**{c: pd.Series(dtype=object) for c in errors.columns}),
                       len(df) - len(out))
    actions = errors["_error_class"].map(rules.action_for)
    failing = errors[actions == "fail"]
    if len(failing):
        first = failing.iloc[0]
        raise FailFast(f"{len(failing)} row(s) of class {first._error_class} with action 'fail'; "
                       f"first: {first._error_type}: {first._error_message}")
    to_default = errors.index[actions == "default"]
    if len(to_default):
        # Fill the defaults into the input rows and give them one more pass; still-bad rows quarantine.
        retry_out, retry_rej, retry_raised = _call(transform, _fill_defaults(df.loc[to_default], rules))
        retry_errors = _concat([retry_rej, retry_raised])
        out = _concat([out.drop(index=to_default, errors="ignore"),
                       retry_out.drop(index=retry_errors.index, errors="ignore")])
        errors = _concat([errors.drop(index=to_default), retry_errors])
        actions = errors["_error_class"].map(rules.action_for).where(lambda a: a != "default", "quarantine")
    # Flagged rows that have an output row are written with the flag; raised rows have none: quarantined.
    flagged = errors.index[(actions == "flag") & errors.index.isin(out.index)]
    if len(flagged):
        out.loc[flagged, "_flag_class"] = errors.loc[flagged, "_error_class"]
        out.loc[flagged, "_flag_message"] = errors.loc[flagged, "_error_message"]
    quarantine = errors.drop(index=flagged)
    out = out.drop(index=quarantine.index, errors="ignore").sort_index()
    quarantined = df.loc[quarantine.index].join(quarantine)
    return Guarded(out, quarantined, len(df) - len(out) - len(quarantined),
                   int(out.index.isin(to_default).sum()))
