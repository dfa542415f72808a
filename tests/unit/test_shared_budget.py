"""The shared budget (FallbackBudget over SharedBudget) with the in-memory store under a fake clock: what a permit costs, waiting, fallback and return."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from waba_lookup.errors import BudgetUnavailable, Throttled
from waba_lookup.fallback import PROBE_SECONDS, FallbackBudget
from waba_lookup.log_store import MemoryLogStore
from waba_lookup.shared_budget import SharedBudget
from waba_lookup.sliding_log import CLOCK_SKEW_MARGIN, HOLD_AFTER_ANSWER, LogRecord, Policy

POLICY = Policy(budget=10, reserve=2, longest_call=1.2)
ENTRY_WAIT = POLICY.longest_call + HOLD_AFTER_ANSWER + CLOCK_SKEW_MARGIN


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds) + 1e-9


class CountingStore(MemoryLogStore):
    """The in-memory store, counting requests by operation."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    def load(self) -> LogRecord:
        self.calls["load"] += 1
        return super().load()

    def replace(self, record: LogRecord, expected_version: str) -> LogRecord | None:
        self.calls["replace"] += 1
        return super().replace(record, expected_version)

    def answer(self, *args: Any) -> LogRecord | None:
        self.calls["answer"] += 1
        return super().answer(*args)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


def budget(store: MemoryLogStore, clock: Clock, shares: tuple[int, int] = (4, 0)) -> FallbackBudget:
    shared = SharedBudget(store, POLICY, wall=lambda: clock.now, clock=lambda: clock.now, sleep=clock.sleep)
    return FallbackBudget(shared, shares, waiter=lambda _cond, seconds: clock.sleep(seconds))


def call(instance: FallbackBudget, clock: Clock, interactive: bool = False, wait: float = 5.0) -> float:
    """One attempt answered at once; returns when it was sent."""
    with instance.permit(clock.now + wait, interactive):
        return clock.now


def test_a_permit_costs_one_conditional_write_and_one_write_back(store: CountingStore, clock: Clock) -> None:
    instance = budget(store, clock)
    call(instance, clock)  # the first also reads the record
    store.calls.clear()
    for _ in range(5):
        clock.sleep(0.2)
        call(instance, clock)
    assert store.calls == Counter(replace=5, answer=5)


def test_a_lost_race_rereads_from_the_failed_write_not_with_a_second_request(
    store: CountingStore, clock: Clock
) -> None:
    first, second = budget(store, clock), budget(store, clock)
    call(first, clock)
    call(second, clock)
    clock.sleep(0.2)
    call(first, clock)  # the second's copy is now out of date
    store.calls.clear()
    clock.sleep(0.2)
    call(second, clock)
    assert store.calls == Counter(replace=2, answer=1)  # lost, then won with the record the loss returned


def test_a_full_log_is_waited_for_and_a_read_that_cannot_wait_long_enough_gets_throttled(
    store: CountingStore, clock: Clock
) -> None:
    instances = [budget(store, clock) for _ in range(10)]
    held = [i.acquire(clock.now + 5, interactive=True) for i in instances]  # ten calls in flight
    reader = budget(store, clock)
    with pytest.raises(Throttled) as raised:
        reader.acquire(clock.now + 0.5, interactive=True)
    assert raised.value.code == "Throttling.Pacing" and raised.value.retry_after >= 1.0
    instances[0].release(held[0])  # answered: its slot frees a second from now
    answered_at = clock.now
    sent = call(reader, clock, interactive=True)
    assert sent == pytest.approx(answered_at + HOLD_AFTER_ANSWER + CLOCK_SKEW_MARGIN, abs=0.01)


def test_with_the_store_down_a_worker_waits_out_unseen_permits_then_uses_its_static_share(
    store: CountingStore, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    worker = budget(store, clock, shares=(2, 0))
    store.down = True
    started = clock.now
    sends = [call(worker, clock) for _ in range(4)]
    assert sends[0] >= started + ENTRY_WAIT
    assert sends[2] - sends[0] >= 1.0  # two calls in any second: the static share
    assert worker.in_fallback and worker.stats.fallbacks == 1
    assert "static shares" in caplog.text


def test_with_the_store_down_an_uncapped_read_is_refused_without_calling(store: CountingStore, clock: Clock) -> None:
    reader = budget(store, clock, shares=(8, 0))
    store.down = True
    with pytest.raises(BudgetUnavailable) as raised:
        call(reader, clock, interactive=True)
    assert raised.value.code == "BudgetUnavailable" and raised.value.retry_after >= 1


def test_with_the_store_down_a_capped_read_uses_its_share_of_the_reserve(store: CountingStore, clock: Clock) -> None:
    reader = budget(store, clock, shares=(8, 1))
    store.down = True
    first = call(reader, clock, interactive=True, wait=10)
    second = call(reader, clock, interactive=True, wait=10)
    assert second - first >= 1.0


def test_back_from_fallback_the_log_waits_until_its_static_calls_no_longer_count(
    store: CountingStore, clock: Clock
) -> None:
    worker, other = budget(store, clock, shares=(2, 0)), budget(store, clock)
    store.down = True
    last_static = call(worker, clock)
    store.down = False
    clock.sleep(PROBE_SECONDS)
    back = call(worker, clock)  # rejoins, records its static calls, then waits them out like everyone
    assert not worker.in_fallback
    assert store.record.static_until >= last_static
    assert back >= store.record.static_until + ENTRY_WAIT - 0.01
    assert call(other, clock) >= store.record.static_until + ENTRY_WAIT - 0.01


def test_a_throttle_is_written_to_the_record_for_every_instance(store: CountingStore, clock: Clock) -> None:
    first, second = budget(store, clock), budget(store, clock)
    call(first, clock)
    first.throttled()
    assert store.record.rate(clock.now, 10) == pytest.approx(0.85 * 8.99)
    sends = [call(second, clock) for _ in range(3)]
    assert sends[1] - sends[0] > 1 / 8.5  # spaced at the deployment's cut rate, not 1/10


def test_settle_returns_at_once_when_every_permit_was_in_the_log(store: CountingStore, clock: Clock) -> None:
    worker = budget(store, clock)
    call(worker, clock)
    before = clock.now
    worker.settle(clock.now + 10)
    assert clock.now == before


def test_a_wait_that_is_already_due_when_it_is_slept_does_not_fail_the_call() -> None:
    """Real clocks move on between reading the wake time and sleeping until it."""
    shared = SharedBudget(MemoryLogStore(), POLICY)
    real = shared.try_acquire
    answers = iter([time.time() - 0.01])  # "look again at" a moment that has just passed
    shared.try_acquire = lambda interactive: next(answers, None) or real(interactive)  # type: ignore[method-assign]
    shared.acquire(time.monotonic() + 5, interactive=False)
