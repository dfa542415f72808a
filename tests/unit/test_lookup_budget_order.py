"""What the use case tells the budget, and when: an attempt's answer is written back before the level learns from
it, so a probe that passed or a throttle never delays the slot's release."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from waba_lookup.budget import BudgetStats
from waba_lookup.customer import Customer
from waba_lookup.errors import Throttled
from waba_lookup.lookup import WabaLookup
from waba_lookup.settings import Settings


class RecordingBudget:
    def __init__(self, events: list[str]) -> None:
        self.events, self.stats, self.release_seconds = events, BudgetStats(), 0.0

    @contextmanager
    def permit(self, send_by: float, interactive: bool) -> Iterator[None]:
        self.events.append("take")
        try:
            yield
        finally:
            self.events.append("give back")

    def throttled(self) -> None:
        self.events.append("throttled")

    def succeeded(self) -> None:
        self.events.append("succeeded")

    def settle(self, wait_until: float) -> None:
        pass


class Cams:
    def __init__(self, answers: list[Exception | dict[str, Any]]) -> None:
        self.answers = answers

    def prepare(self) -> None:
        pass

    def query(self, cust_space_id: str, isv_code: str) -> dict[str, Any]:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_the_answer_is_written_back_before_the_budget_learns_from_it() -> None:
    events: list[str] = []
    cams = Cams([Throttled("flow control", "System.LimitControl"), {"Data": {}}])
    lookup = WabaLookup(Settings(), lambda: cams, lambda: RecordingBudget(events), jitter=lambda: 0.0)
    assert lookup.fetch(Customer("cs-1", "isv-1"), deadline=10**9) == {"Data": {}}
    assert events == ["take", "give back", "throttled", "take", "give back", "succeeded"]
