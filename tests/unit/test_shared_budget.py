"""The shared budget with the in-memory store under a fake clock: what a permit costs, waiting, failing closed, and an
instance's own log without a table."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from waba_lookup.errors import BudgetUnavailable, Throttled
from waba_lookup.log_store import MemoryLogStore, StoreUnavailable
from waba_lookup.shared_budget import SharedBudget
from waba_lookup.sliding_log import CLOCK_SKEW_MARGIN, HOLD_AFTER_ANSWER, LogRecord, Policy

POLICY = Policy(budget=10, reserve=2, longest_call=1.2)


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


def budget(store: MemoryLogStore, clock: Clock, policy: Policy = POLICY, local: bool = False) -> SharedBudget:
    return SharedBudget(store, policy, local, wall=lambda: clock.now, clock=lambda: clock.now, sleep=clock.sleep)


def call(instance: SharedBudget, clock: Clock, interactive: bool = False, wait: float = 5.0) -> float:
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


@pytest.mark.parametrize("interactive", [False, True])
def test_with_the_store_down_no_permit_is_given_after_one_immediate_retry(
    store: CountingStore, clock: Clock, caplog: pytest.LogCaptureFixture, interactive: bool
) -> None:
    instance = budget(store, clock)
    store.down = True
    started = clock.now
    with pytest.raises(BudgetUnavailable) as raised:
        call(instance, clock, interactive)
    assert raised.value.code == "BudgetUnavailable" and raised.value.retry_after >= 1
    assert clock.now == started and instance.stats.store_requests == 2  # the request and one retry, no waiting
    assert instance.stats.store_failures == 1 and "shared CAMS budget unreachable" in caplog.text


def test_one_failed_request_costs_one_immediate_retry_not_seconds(store: CountingStore, clock: Clock) -> None:
    instance = budget(store, clock)
    failures = iter([True])
    real = store.replace

    def fails_once(record: LogRecord, expected_version: str) -> LogRecord | None:
        if next(failures, False):
            raise StoreUnavailable("one lost write")
        return real(record, expected_version)

    store.replace = fails_once  # type: ignore[method-assign]
    started = clock.now
    assert call(instance, clock) == started
    assert instance.stats.store_failures == 0


def test_a_partial_outage_fails_closed_while_others_keep_the_log(store: CountingStore, clock: Clock) -> None:
    """One instance cannot reach the store, the others can: it sends nothing, so the log stays the whole truth."""
    cut_off, others = budget(MemoryLogStore(), clock), [budget(store, clock) for _ in range(3)]
    cut_off.store.down = True  # type: ignore[attr-defined]
    with pytest.raises(BudgetUnavailable):
        call(cut_off, clock)
    sends = [call(others[n % 3], clock) for n in range(12)]
    assert sum(1 for t in sends if t < sends[0] + 1.0) <= POLICY.budget


def test_an_answer_that_cannot_be_written_back_is_not_an_error(store: CountingStore, clock: Clock) -> None:
    instance = budget(store, clock)
    with instance.permit(clock.now + 5, interactive=False):
        store.down = True
    assert instance.stats.store_failures == 1  # the slot frees itself at send + the longest call + a second


def test_without_a_table_an_invocation_ends_holding_no_live_permit(clock: Clock) -> None:
    own = budget(MemoryLogStore(), clock, Policy(budget=2, reserve=0, longest_call=1.2), local=True)
    call(own, clock)
    answered = clock.now
    own.settle(clock.now + 10)
    assert clock.now >= answered + HOLD_AFTER_ANSWER and own.store.load().live(clock.now) == []


def test_a_throttle_is_written_to_the_record_for_every_instance(store: CountingStore, clock: Clock) -> None:
    first, second = budget(store, clock), budget(store, clock)
    call(first, clock)
    first.throttled()
    assert store.record.rate(clock.now, 10) == pytest.approx(0.85 * 8.99)
    sends = [call(second, clock) for _ in range(3)]
    assert sends[1] - sends[0] > 1 / 8.5  # spaced at the deployment's cut rate, not 1/10


def test_settle_returns_at_once_with_the_shared_log(store: CountingStore, clock: Clock) -> None:
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
