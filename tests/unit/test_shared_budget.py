"""The shared budget with the in-memory store under a fake clock: what a permit costs, the line, failing closed, and
an instance's own log without a table."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace

import pytest

from waba_lookup.budget import log, shared
from waba_lookup.budget.log import CLOCK_SKEW_MARGIN, HOLD_AFTER_ANSWER, LogRecord, Policy, Slot
from waba_lookup.budget.shared import SharedBudget
from waba_lookup.budget.store import Column, Expects, MemoryLogStore, Names, Put, StoreUnavailable, slot_columns
from waba_lookup.errors import BudgetUnavailable, Throttled

POLICY = Policy(budget=10, reserve=2, longest_call=1.2)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds) + 1e-9


class CountingStore(MemoryLogStore):
    """The in-memory store, counting requests by what they do."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    def load(self) -> LogRecord:
        self.calls["load"] += 1
        return super().load()

    def update(self, put: Put, delete: Names = (), expect: Expects = (), returning: bool = False) -> LogRecord | None:
        self.calls[kind_of(put)] += 1
        return super().update(put, delete, expect, returning)


def kind_of(put: Mapping[str, Column]) -> str:
    """What an update does, from the columns it sets."""
    if not put:
        return "leave"
    if all(column.startswith("q") for column in put):
        return "join"
    if any(column.startswith("h") for column in put):
        return "take"
    return "answer" if any(column.startswith("a") for column in put) else "cut"


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
    assert store.calls == Counter(take=5, answer=5)


def test_two_instances_taking_the_same_free_slot_never_share_it(store: CountingStore, clock: Clock) -> None:
    first, second = budget(store, clock), budget(store, clock)
    call(first, clock)
    call(second, clock)  # both copies now hold the same view of the record
    one, other = first.acquire(clock.now + 5, False), second.acquire(clock.now + 5, False)
    assert one.index != other.index


def test_a_slot_still_counting_is_not_taken_whatever_the_copy_says(store: CountingStore, clock: Clock) -> None:
    tight = Policy(budget=1, reserve=0, longest_call=1.2)
    first, second = budget(store, clock, tight), budget(store, clock, tight)
    call(second, clock)  # second's copy: the slot answered, free a second later
    held = first.acquire(clock.now + 5, True)  # first takes it once it frees; second's copy does not know
    clock.sleep(0.01)
    with pytest.raises(Throttled):
        second.acquire(clock.now + 0.5, True)
    first.give_back(held)
    assert store.load().slots[0].holder == held.holder


def test_a_full_log_is_waited_for_and_a_read_that_cannot_wait_long_enough_gets_throttled(
    store: CountingStore, clock: Clock
) -> None:
    instances = [budget(store, clock) for _ in range(10)]
    held = [i.acquire(clock.now + 5, interactive=True) for i in instances]  # ten calls in flight
    reader = budget(store, clock)
    with pytest.raises(Throttled) as raised:
        reader.acquire(clock.now + 0.5, interactive=True)
    assert raised.value.code == "Throttling.Pacing" and raised.value.retry_after >= 1.0
    assert store.load().line == ()  # it left the line at once: no one waits behind a place nobody will take
    instances[0].give_back(held[0])  # answered: its slot frees a second from now
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
    real = store.update

    def fails_once(*args: object, **kwargs: object) -> LogRecord | None:
        if next(failures, False):
            raise StoreUnavailable("one lost write")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    store.update = fails_once  # type: ignore[method-assign]
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
    for _ in range(8):
        call(first, clock, interactive=True)
    first.throttled()
    assert store.load().rate(clock.now, 10) == 5  # halved
    sends = [call(second, clock) for _ in range(3)]
    assert sends[1] - sends[0] >= 1 / 5  # spaced at the deployment's cut rate, not 1/10


def test_a_probe_passed_is_written_to_the_record_when_its_top_call_is_answered(
    store: CountingStore, clock: Clock
) -> None:
    instance = budget(store, clock)
    for _ in range(8):
        call(instance, clock, interactive=True)
    instance.throttled()
    clock.sleep(log.PROBE_FIRST)  # the first probe opens: two slots more than the level of 5
    for _ in range(6):
        call(instance, clock, interactive=True)
        instance.succeeded()
    assert store.load().level == 5  # the top slot not reached yet
    call(instance, clock, interactive=True)
    instance.succeeded()  # the seventh, in the top slot, with all seven in CAMS's window
    assert store.load().level == 6


def test_settle_returns_at_once_with_the_shared_log(store: CountingStore, clock: Clock) -> None:
    worker = budget(store, clock)
    call(worker, clock)
    before = clock.now
    worker.settle(clock.now + 10)
    assert clock.now == before


def serve_a_crowd(store: CountingStore) -> list[tuple[bool, int]]:
    """Real threads and a real clock: 30 background waiters, then 10 reads, over one store; the order they got
    their permits in, as (interactive, arrival)."""
    order: list[tuple[bool, int]] = []
    lock = threading.Lock()
    ready = threading.Barrier(41)

    def waiter(interactive: bool, arrival: int) -> None:
        instance = SharedBudget(store, Policy(budget=10, reserve=2, longest_call=1.0))
        ready.wait()
        time.sleep(arrival * 0.004 + (0.3 if interactive else 0.0))
        try:
            with instance.permit(time.monotonic() + 30, interactive):
                with lock:
                    order.append((interactive, arrival))
                time.sleep(0.02)
        except Throttled:
            pass  # not served: the check counts it

    threads = [threading.Thread(target=waiter, args=(False, n)) for n in range(30)]
    threads += [threading.Thread(target=waiter, args=(True, n)) for n in range(10)]
    for thread in threads:
        thread.start()
    ready.wait()
    for thread in threads:
        thread.join()
    return order


def served_in_order(order: list[tuple[bool, int]], store: CountingStore) -> None:
    assert len(order) == 40, f"{40 - len(order)} waiters were never served"
    assert sum(store.calls.values()) / len(order) <= 5, f"store requests: {store.calls}"
    background = [n for interactive, n in order if not interactive]
    reads_at = [i for i, (interactive, _) in enumerate(order) if interactive]
    assert max(reads_at) < 25, f"reads waited behind background work that came before them: {order}"
    # ten slots free at a time, so whoever is among the next ten may go first; threads that wake late on a busy
    # machine lose a few places more, never half the line
    displaced = max(abs(position - arrival) for position, arrival in enumerate(background))
    assert displaced <= 15, f"background work out of its arrival order: {background}"


def test_a_crowd_is_served_in_order_reads_first_with_a_bounded_number_of_store_requests() -> None:
    store = CountingStore()
    served_in_order(serve_a_crowd(store), store)


def test_the_order_check_catches_a_herd_that_ignores_the_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same crowd, every waiter blind to the line (each takes any slot it sees free): the check fails."""

    def herd(record: LogRecord, now: float, policy: Policy, holder: str, interactive: bool, ticket: object) -> object:
        return log.admit(replace(record, line=()), now, policy, holder, interactive, None)

    monkeypatch.setattr(shared, "admit", herd)
    store = CountingStore()
    with pytest.raises(AssertionError, match="never served|store requests|arrival order|waited behind"):
        served_in_order(serve_a_crowd(store), store)


def test_a_place_in_line_that_nobody_takes_lapses(store: CountingStore, clock: Clock) -> None:
    """A waiter that died in line: those behind it wait at most a grace after its planned turn."""
    tight = Policy(budget=1, reserve=0, longest_call=1.2)
    holder, dead, behind = budget(store, clock, tight), budget(store, clock, tight), budget(store, clock, tight)
    held = holder.acquire(clock.now + 5, True)
    sleeps: list[float] = []
    dead.sleep = lambda seconds: sleeps.append(seconds)  # it joins, plans, "sleeps" and never comes back
    with pytest.raises(Throttled):
        dead.acquire(clock.now + 0.01, True)
    holder.give_back(held)
    started = clock.now
    call(behind, clock, interactive=True, wait=10)
    assert clock.now - started < HOLD_AFTER_ANSWER + 2.5


def test_a_worker_alone_spaced_by_the_rate_pays_two_requests_a_permit(store: CountingStore, clock: Clock) -> None:
    """Background permits are spaced 1/rate apart: waiting for the next one, with no one in line, joins nothing."""
    worker = budget(store, clock)
    call(worker, clock)
    store.calls.clear()
    for _ in range(5):
        call(worker, clock)  # back to back: each waits a tenth of a second for its spacing
    assert store.calls == Counter(take=5, answer=5)


def test_a_place_in_line_that_already_lasts_to_the_deadline_is_not_written_again(
    store: CountingStore, clock: Clock
) -> None:
    """A read whose turn comes just before its deadline: its place already lasts until then, and cannot last longer
    (a read never waits past its deadline), so renewing it would be a request that changes nothing."""
    instances = [budget(store, clock) for _ in range(10)]
    held = [i.acquire(clock.now + 5, interactive=True) for i in instances]  # ten calls in flight
    instances[0].give_back(held[0])  # its slot frees a second from now
    store.calls.clear()
    reader = budget(store, clock)
    call(reader, clock, interactive=True, wait=HOLD_AFTER_ANSWER)  # the turn lands within a lookahead of it
    assert store.calls["join"] == 1, store.calls  # a renewal writes the ticket's column again: kind_of says "join"


def test_background_work_shut_out_by_the_reserve_waits_for_a_real_slot(store: CountingStore, clock: Clock) -> None:
    """After throttles leave a level no larger than the interactive reserve, background work has no slot while reads
    are recent: it waits until they are quiet, then takes a slot of the record like any permit, never one outside."""
    store.update({"lv": 2.0, "ta": clock.now - 10, "pf": clock.now + 60, "nf": 1.0, "ra": clock.now})
    worker = budget(store, clock)
    held = worker.acquire(clock.now + 30, interactive=False)
    assert 0 <= held.index < 2, held
    assert store.load().slots[held.index].holder == held.holder


def test_a_turn_planned_before_a_cut_is_not_taken_above_the_new_level(store: CountingStore, clock: Clock) -> None:
    """A waiter sleeps toward its planned slot; meanwhile a throttle cuts the level below it: it plans again."""
    now = clock.now
    for i in range(10):  # every slot in flight but slot 7, answered: free first, the waiter's planned turn
        held = Slot(f"h{i}", now + 0.5, now + 2.7, answered=False, interactive=True)
        store.update(slot_columns(i, replace(held, sent=now, expires=now + 1, answered=True) if i == 7 else held))
    reader = budget(store, clock)

    def sleep_through_a_cut(seconds: float) -> None:
        store.update({"lv": 2.0, "ta": clock.now, "pf": clock.now + 60, "nf": 1.0})
        reader.sleep = clock.sleep
        clock.sleep(seconds)

    reader.sleep = sleep_through_a_cut
    permit = reader.acquire(clock.now + 4, interactive=True)
    assert permit.index < 2, permit


def test_a_retry_after_a_failed_request_leaves_no_place_in_line_behind(store: CountingStore, clock: Clock) -> None:
    """The waiter joined, then its take failed: the immediate retry is the same holder, so no ticket of the first
    attempt stays in line for others to wait behind until it lapses."""
    instances = [budget(store, clock) for _ in range(10)]
    held = [i.acquire(clock.now + 5, interactive=True) for i in instances]
    instances[0].give_back(held[0])
    failures = iter([True])
    real = store.update

    def take_fails_once(put: Put, *args: object, **kwargs: object) -> LogRecord | None:
        if kind_of(put) == "take" and next(failures, False):
            raise StoreUnavailable("one lost write")
        return real(put, *args, **kwargs)  # type: ignore[arg-type]

    store.update = take_fails_once  # type: ignore[method-assign]
    reader = budget(store, clock)
    reader.take(clock.now + 5, interactive=True)
    assert store.load().line == ()


def test_a_waiter_whose_clock_reads_earlier_but_joins_later_plans_its_turn_behind(
    store: CountingStore, clock: Clock
) -> None:
    """x joins the line first; a's clock reads 10 ms behind, so by the clocks a joined first. It plans its turn
    behind x all the same: it counts ahead of it the tickets its join found."""
    for i in range(10):  # every slot in flight, freeing in turn
        store.update(slot_columns(i, Slot(f"h{i}", clock.now, clock.now + 1.5 + 0.1 * i, answered=True)))
    wakes: dict[str, float] = {}  # the turn each planned, by its own clock

    class Frozen(Exception):
        """The instance froze in line: its ticket stays."""

    def waiter(name: str, skew: float) -> SharedBudget:
        def sleep(seconds: float) -> None:
            wakes[name] = clock.now + skew + seconds
            raise Frozen

        wall = lambda: clock.now + skew
        return SharedBudget(store, POLICY, wall=wall, clock=lambda: clock.now, sleep=sleep, new_id=lambda: name)

    for name, skew in (("x", 0.0), ("a", -0.01)):
        with pytest.raises(Frozen):
            waiter(name, skew).acquire(clock.now + 5, interactive=True)
    joined = {t.id: t.joined for t in store.load().line}
    assert joined["a"] < joined["x"] and wakes["a"] > wakes["x"] + 0.05  # a later turn, not the same one


def slow_down(store: CountingStore, clock: Clock, kind: str, seconds: float) -> None:
    """From now on, the store's updates of this kind (see `kind_of`) take `seconds` of the fake clock."""
    real = store.update

    def slow(put: Put, *args: object, **kwargs: object) -> LogRecord | None:
        if kind_of(put) == kind:
            clock.sleep(seconds)
        return real(put, *args, **kwargs)  # type: ignore[arg-type]

    store.update = slow  # type: ignore[method-assign]


def test_a_slow_join_does_not_date_the_permit_or_the_plan_before_it(store: CountingStore, clock: Clock) -> None:
    """A join under a crowd can take most of a second. What the waiter does next starts from when the join came back:
    a permit dated before it would stop counting early if its call were never answered, and a turn planned from
    before it comes too early, costing a lost take and a look."""
    slow_down(store, clock, "join", 0.8)
    joined_back = clock.now + 0.8
    held = budget(store, clock).acquire(clock.now + 5, interactive=True)  # no copy of the record: it joins
    assert held.start >= joined_back
    assert store.load().slots[held.index].expires >= joined_back + POLICY.longest_call + HOLD_AFTER_ANSWER


def test_a_permit_never_answered_counts_until_its_call_could_end_after_a_slow_take(
    store: CountingStore, clock: Clock
) -> None:
    """The call is sent once the take comes back: a permit whose holder dies before writing its answer must count
    until that call's latest end plus a second, not from the moment the take was asked."""
    slow_down(store, clock, "take", 0.5)
    held = budget(store, clock).acquire(clock.now + 5, interactive=True)
    sent_by = clock.now
    assert store.load().slots[held.index].expires >= sent_by + POLICY.longest_call + HOLD_AFTER_ANSWER


def test_a_take_that_comes_back_too_late_is_given_up_and_no_call_is_made(store: CountingStore, clock: Clock) -> None:
    slow_down(store, clock, "take", log.TAKE_LONGEST_SECONDS + 0.1)
    with pytest.raises(BudgetUnavailable):
        budget(store, clock).take(clock.now + 5, interactive=True)
    assert not store.load().live(clock.now + CLOCK_SKEW_MARGIN)  # given back at once: nothing was sent


def test_every_store_gives_up_on_a_request_before_a_take_would_be_too_late() -> None:
    """A take comes back within its client's timeout, so a permit's call is sent within TAKE_LONGEST_SECONDS of
    its start (later, it is given up unused)."""
    from waba_lookup.budget.dynamodb import DynamoLogStore
    from waba_lookup.budget.tablestore import TablestoreLogStore

    for store in (DynamoLogStore, TablestoreLogStore, MemoryLogStore):
        assert store.answer_seconds <= log.TAKE_LONGEST_SECONDS, store
