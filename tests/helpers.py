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
