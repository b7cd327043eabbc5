"""One schema per kind of published file: conforming, and rows added later (replay) that must fit."""

from __future__ import annotations

import pyarrow as pa
import pytest

from flows.publish import SchemaConflict, conform, fit_published

PUBLISHED = pa.schema([("id", pa.int64()), ("score", pa.float64()), ("note", pa.string())])


def test_conform_promotes_orders_and_fills_missing_columns():
    table = pa.table({"note": pa.nulls(2), "id": [1, 2]})
    out = conform(table, PUBLISHED)
    assert out.schema == PUBLISHED and out["score"].null_count == 2 and out["id"].to_pylist() == [1, 2]


def test_replayed_rows_fit_the_published_schema_or_say_why():
    assert fit_published(pa.table({"id": [1.0, 999.0], "score": [1, 2]}), PUBLISHED)["id"].to_pylist() == [1, 999]
    with pytest.raises(SchemaConflict, match="published schema"):
        fit_published(pa.table({"id": [1.5]}), PUBLISHED)          # would lose the fraction
    with pytest.raises(SchemaConflict, match=r"\['extra'\]"):
        fit_published(pa.table({"id": [1], "extra": ["x"]}), PUBLISHED)
