"""Test data builders and test transforms (importable by Ray workers through PYTHONPATH)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

# A messy transactions CSV: line numbers count the header as line 1.
TRANSACTIONS = (
    b"id,customer_id,amount\n"        # 1
    b"1,10,50.5\n"                    # 2 ok
    b"2,,20\n"                        # 3 null customer_id -> data_quality
    b"3,11,-5\n"                      # 4 negative amount -> data_quality
    b"4,12,1500\n"                    # 5 ok (high)
    b"5,0,30\n"                       # 6 customer_id <= 0 -> business_rule
    b"6,13,40,extra\n"                # 7 ragged -> data_quality (CsvParseError)
    b"7,14,\xff9\n"                   # 8 invalid UTF-8 -> data_quality (UnicodeDecodeError)
    b"8,15,70\n"                      # 9 ok
)
EXPECTED_QUARANTINE = {  # line -> (class, type)
    3: ("data_quality", "MissingValue"), 4: ("data_quality", "InvalidAmount"),
    6: ("business_rule", "InvalidCustomer"), 7: ("data_quality", "CsvParseError"),
    8: ("data_quality", "UnicodeDecodeError"),
}
EXPECTED_WRITTEN_IDS = [1, 4, 8]


def write_transactions(path: Path) -> Path:
    path.write_bytes(TRANSACTIONS)
    return path


def read_dir(path: Path) -> pd.DataFrame:
    files = sorted(Path(path).glob("*.parquet"))
    if not files:
        return pd.DataFrame()
    return pa.concat_tables([pq.read_table(f) for f in files], promote_options="default").to_pandas()


def write_policy(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---- test transforms for retries, crashes and errored blocks (run on Ray workers) ----

import os
import uuid

from tasks import BusinessRuleError  # noqa: E402,F401 - re-exported for tests
from tasks.circuit import CircuitBreaker


def _attempt(kind: str, key: str) -> int:
    """How many times this (kind, key) was seen before, across processes; records this one."""
    folder = Path(os.environ["RAYFT_TEST_STATE"]) / kind / key
    folder.mkdir(parents=True, exist_ok=True)
    seen = len(list(folder.iterdir()))
    (folder / uuid.uuid4().hex).touch()
    return seen


def _batch_key(df) -> str:
    return f"{int(df['id'].iloc[0])}-{len(df)}"


def connection_error_twice(df):
    """Raises ConnectionError on the first two attempts of every batch."""
    if _attempt("conn", _batch_key(df)) < 2:
        raise ConnectionError("service unavailable (test)")
    return df.assign(ok=True)


def value_error_twice(df):
    """Raises ValueError on the first two calls for every batch: a row-level class, never retried."""
    if _attempt("value", _batch_key(df)) < 2:
        raise ValueError("bad value (test)")
    return df.assign(ok=True)


def always_connection_error(df):
    raise ConnectionError("dependency is down (test)")


def fail_ids_400s(df):
    """A deterministic system error for every batch that holds a row with id 400..499 (file 4)."""
    if df["id"].between(400, 499).any():
        raise RuntimeError("poison batch (test)")
    return df


class Unpicklable(Exception):
    def __init__(self, code, detail):   # two required args: Ray cannot rebuild it from args
        super().__init__(f"code {code}: {detail}")


def raise_unpicklable(df):
    if df["id"].between(400, 499).any():
        raise Unpicklable(42, "cannot be unpickled")
    return df


def _down(_value):
    raise ConnectionError("geo service down (test)")


def enrich_with_breaker(df):
    geo = CircuitBreaker("geo", failures=3, reset_seconds=60)
    zips = []
    for value in df["id"]:
        try:
            zips.append(geo.call(_down, value))
        except ConnectionError:
            zips.append(None)
    return df.assign(zip=zips)


def write_numbered_files(folder: Path, files: int, rows: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(files):
        ids = range(f * rows, (f + 1) * rows)
        (folder / f"file{f}.csv").write_text("id,value\n" + "".join(f"{i},{i * 3}\n" for i in ids))
    return folder


def slow_passthrough(df):
    """Three seconds per batch: the work dominates start-up, and a run can be killed between commits."""
    import time
    time.sleep(3.0)
    return df


def fail_file1_once(df):
    """A non-transient system error the first time file 1's batch runs, then fine."""
    if df["id"].between(100, 199).any() and _attempt("file1", "once") == 0:
        raise RuntimeError("file 1 fails once (test)")
    return df


def lenient_transactions(df):
    """The 'fixed' transform for replay: a null customer becomes 999, a negative amount its absolute
    value; a customer_id <= 0 is still a business-rule violation."""
    from tasks.examples import transactions
    fixed = df.assign(customer_id=df["customer_id"].fillna(999), amount=df["amount"].abs())
    return transactions(fixed)


def flaky_message_twice(df):
    """A RuntimeError (never retried by Ray's retry_exceptions here) on the first two calls of a batch,
    with a message that a `retried_map_errors` pattern can match."""
    if _attempt("mapflaky", _batch_key(df)) < 2:
        raise RuntimeError("flaky upstream (test)")
    return df.assign(ok=True)


def drifting_dtypes(df):
    """Output dtypes that depend on the batch, as pandas gives them: in the batch of ids 0..99 `score`
    meets a NaN (float64) and a column `only_first` exists; elsewhere `score` is int64. `note` is all
    None (no type) in that batch and text elsewhere."""
    out = df.assign(score=df["id"].astype("int64"))
    if int(df["id"].iloc[0]) < 100:
        out["score"] = out["score"].astype("float64")
        out.loc[out.index[0], "score"] = float("nan")
        out["only_first"] = "x"
    out["note"] = pd.Series([f"n{i}" if i >= 100 else None for i in df["id"]], index=df.index, dtype=object)
    return out


def incompatible_dtypes(df):
    """`code` is an integer in the first file's batch and text in the others: no common type."""
    if int(df["id"].iloc[0]) < 100:
        return df.assign(code=df["id"].astype("int64"))
    return df.assign(code=df["id"].astype(str))


def _geo_flaky(value):
    if _attempt("geo-calls", "all") < 3:   # the first three calls of the run fail, in any process
        raise ConnectionError("geo service warming up (test)")
    return f"Z{value}"


def breaker_trips_then_recovers(df):
    """The README's breaker: its third consecutive failure trips it and fails the block attempt; Ray
    retries the block (ConnectionError is transient), and the calls then succeed."""
    geo = CircuitBreaker("geo-flaky", failures=3, reset_seconds=0.01)
    return df.assign(zip=[geo.call(_geo_flaky, v) for v in df["id"]])
