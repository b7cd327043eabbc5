"""Error classes, how exceptions map to them, and the one error-record format.

Every quarantined row - a parse reject, a transform error, a rejected row, a row of a dropped block -
carries the same columns (ERROR_COLUMNS); quarantine files, artifacts and replay all read them.
"""

from __future__ import annotations

import pyarrow as pa

DATA_QUALITY, SCHEMA_MISMATCH, BUSINESS_RULE, SYSTEM_ERROR, DROPPED_BLOCK = (
    "data_quality", "schema_mismatch", "business_rule", "system_error", "dropped_block")
ROW_CLASSES = (DATA_QUALITY, SCHEMA_MISMATCH, BUSINESS_RULE)

ERROR_COLUMNS = pa.schema([
    ("_error_class", pa.string()),
    ("_error_type", pa.string()),
    ("_error_message", pa.string()),
    ("_source", pa.string()),
    ("_line", pa.int64()),
    ("_raw", pa.string()),   # the raw line where the row could not be parsed into columns
])
MAX_MESSAGE = 500


class BusinessRuleError(Exception):
    """Raise from a transform when a row breaks a business rule (class business_rule)."""


class FailFast(Exception):
    """A row whose class action is `fail`: stops the job, never retried."""


def classify(exc: BaseException) -> str:
    if isinstance(exc, BusinessRuleError):
        return BUSINESS_RULE
    if isinstance(exc, KeyError):
        return SCHEMA_MISMATCH
    if isinstance(exc, (ValueError, TypeError)):
        return DATA_QUALITY
    return SYSTEM_ERROR


def describe(exc: BaseException) -> tuple[str, str]:
    """(type name, message) of an exception, message capped; never fails on odd exceptions."""
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not hide the error
        message = repr(exc)
    return type(exc).__name__, message[:MAX_MESSAGE]
