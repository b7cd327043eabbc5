"""Vectorised rejects: a transform marks bad rows by mask instead of raising.

    from tasks import Rejects

    def clean(df):
        rejects = Rejects()
        rejects.add(df.amount < 0, "data_quality", "negative amount")
        return df.assign(amount_x2=df.amount * 2), rejects

Masks are aligned on the input's index; rejected rows are handled by the policy of their class and never
written as data (unless their class is flagged). The first mask that marks a row names its error.
"""

from __future__ import annotations

import pandas as pd

from tasks.errors import ROW_CLASSES, SYSTEM_ERROR


class Rejects:
    def __init__(self) -> None:
        self._marks: list[tuple[pd.Series, str, str, str]] = []

    def add(self, mask: pd.Series, error_class: str, message: str, error_type: str = "Rejected") -> "Rejects":
        if error_class not in ROW_CLASSES:
            raise ValueError(f"a reject's class is one of {ROW_CLASSES}, not {error_class!r}"
                             f"{' (raise the error instead)' if error_class == SYSTEM_ERROR else ''}")
        self._marks.append((mask.fillna(False).astype(bool), error_class, message, error_type))
        return self

    def frame(self) -> pd.DataFrame:
        """One row per rejected input label: _error_class, _error_type, _error_message."""
        parts = [pd.DataFrame({"_error_class": cls, "_error_type": typ, "_error_message": msg},
                              index=mask.index[mask.to_numpy()])
                 for mask, cls, msg, typ in self._marks if mask.any()]
        if not parts:
            return empty_errors()
        frame = pd.concat(parts)
        return frame[~frame.index.duplicated(keep="first")]


def empty_errors() -> pd.DataFrame:
    return pd.DataFrame({"_error_class": pd.Series(dtype=object), "_error_type": pd.Series(dtype=object),
                         "_error_message": pd.Series(dtype=object)})
