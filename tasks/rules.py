"""What the Ray Data block tasks need from the policy, as a small frozen value.

Built from the FaultPolicy by `blocks.runtime.row_rules` (the one translation place). Block workers import
only this, not Prefect: a fresh Ray worker starts in about half the time.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RowRules:
    actions: tuple[tuple[str, str], ...] = ()          # (error class, action) for the row classes
    default_values: tuple[tuple[str, object], ...] = ()
    io_error_patterns: tuple[str, ...] = ()
    io_retry_attempts: int = 5
    sample_rows: int = 5
    faults: tuple[tuple[str, object], ...] = field(default=())   # fault injection (tasks.faults)

    def action_for(self, error_class: str) -> str:
        return dict(self.actions).get(error_class, "escalate")

    def flags_rows(self) -> bool:
        return any(action == "flag" for _, action in self.actions)

    @property
    def defaults(self) -> dict:
        return dict(self.default_values)
