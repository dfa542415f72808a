"""What permits cost an instance: for `make bench` and the logs, never for decisions."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class BudgetStats:
    permits: int = 0
    waits: list[float] = field(default_factory=list)  # seconds each background permit waited, by arrival
    interactive_waits: list[float] = field(default_factory=list)
    store_requests: int = 0
    store_seconds: float = 0.0
    by_kind: dict[str, int] = field(default_factory=dict)  # store requests by what they were for (join, take...)
    store_failures: int = 0  # permits refused, or answers not written back, because the store failed

    def record_wait(self, seconds: float, interactive: bool) -> None:
        self.permits += 1
        (self.interactive_waits if interactive else self.waits).append(seconds)
