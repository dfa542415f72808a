"""The budget's record, transition by transition, under a fake clock (times are plain numbers)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from waba_lookup.budget.log import (
    CLOCK_SKEW_MARGIN,
    HOLD_AFTER_ANSWER,
    HOLD_SECONDS,
    LOOKAHEAD_SECONDS,
    PROBE_SECONDS,
    READS_RECENT_SECONDS,
    LogRecord,
    Policy,
    Take,
    Ticket,
    Wait,
    admit,
    cut,
)

POLICY = Policy(budget=10, reserve=2, longest_call=6.0)
T0 = 1_000.0


def take(record: LogRecord, now: float, interactive: bool = True, policy: Policy = POLICY) -> LogRecord:
    decision = admit(record, now, policy, f"p{now}", interactive)
    assert isinstance(decision, Take), decision
    return decision.applied(record)


def answer(record: LogRecord, holder_sent: float, now: float) -> LogRecord:
    slots = [
        replace(s, expires=now + HOLD_AFTER_ANSWER, answered=True) if s.holder == f"p{holder_sent}" else s
        for s in record.slots
    ]
    return replace(record, slots=tuple(slots))


def starts_at(record: LogRecord, now: float, interactive: bool = True, policy: Policy = POLICY) -> float | None:
    """When a permit taken at `now` may be used, or None if it cannot be taken yet."""
    decision = admit(record, now, policy, "new", interactive)
    if isinstance(decision, Wait):
        assert decision.until > now
        return None
    return decision.slot.sent


def full(now: float) -> LogRecord:
    record = LogRecord()
    for i in range(POLICY.budget):
        record = take(record, now + i * 0.01)
    return record


def test_the_budget_is_the_number_of_live_permits() -> None:
    record = full(T0)
    decision = admit(record, T0 + 0.1, POLICY, "late", interactive=True)
    assert isinstance(decision, Wait)


def test_a_slot_frees_a_second_after_its_answer_plus_the_skew_margin() -> None:
    record = answer(full(T0), T0, now=T0 + 0.2)
    frees_at = T0 + 0.2 + HOLD_AFTER_ANSWER + CLOCK_SKEW_MARGIN
    wait = admit(record, T0 + 0.5, POLICY, "x", True)
    assert isinstance(wait, Wait) and wait.until == pytest.approx(frees_at - LOOKAHEAD_SECONDS)
    # it may be taken a moment ahead, but it starts when the slot frees, not before
    assert starts_at(record, frees_at - LOOKAHEAD_SECONDS - 0.001) is None
    assert starts_at(record, frees_at - LOOKAHEAD_SECONDS + 0.001) == pytest.approx(frees_at)
    assert starts_at(record, frees_at + 0.3) == frees_at + 0.3


def test_an_unanswered_permit_counts_until_send_plus_the_longest_call_and_a_second() -> None:
    """A holder that never writes back (frozen, killed) frees its slot only at the worst case."""
    record = take(LogRecord(), T0)
    small = Policy(budget=1, reserve=0, longest_call=6.0)
    worst = T0 + 6.0 + HOLD_AFTER_ANSWER + CLOCK_SKEW_MARGIN
    assert starts_at(record, worst - LOOKAHEAD_SECONDS - 0.001, policy=small) is None
    assert starts_at(record, worst - 0.01, policy=small) == pytest.approx(worst)


def test_a_slow_call_stays_live_however_many_permits_come_after_it() -> None:
    """Not a ring of the last `budget` permits: the slow first call still counts when nine more have come and
    gone, so only nine can be live beside it."""
    record = take(LogRecord(), T0)  # slow: never answered in this test
    for round_ in range(3):
        now = T0 + round_ * 1.1
        taken = 0
        while isinstance(decision := admit(record, now, POLICY, f"r{round_}-{taken}", True), Take):
            record = decision.applied(record)
            taken += 1
        assert taken == POLICY.budget - 1
        assert f"p{T0}" in {s.holder for s in record.live(now)}
        # answer everything but the slow one
        record = replace(
            record,
            slots=tuple(s if s.holder == f"p{T0}" else replace(s, expires=now, answered=True) for s in record.slots),
        )


def test_waiting_is_told_when_the_first_slot_could_free() -> None:
    record = answer(full(T0), T0 + 0.03, now=T0 + 0.5)  # one answered at 0.5
    decision = admit(record, T0 + 0.6, POLICY, "x", interactive=True)
    frees_at = T0 + 0.5 + HOLD_AFTER_ANSWER + CLOCK_SKEW_MARGIN
    assert isinstance(decision, Wait) and decision.until == pytest.approx(frees_at - LOOKAHEAD_SECONDS)
    assert decision.start == pytest.approx(frees_at) and record.slots[decision.index].answered


def test_background_permits_are_spaced_one_rate_apart_and_reads_are_not() -> None:
    record = take(LogRecord(), T0, interactive=False)
    assert starts_at(record, T0 + 0.01, interactive=False) is None
    assert starts_at(record, T0 + 0.06, interactive=False) == pytest.approx(T0 + 0.1)
    assert starts_at(record, T0 + 0.01, interactive=True) == T0 + 0.01


def test_after_a_read_background_permits_leave_the_reserve_free() -> None:
    record = take(LogRecord(), T0, interactive=True)
    now = T0
    for _ in range(POLICY.budget - POLICY.reserve - 1):
        now += 0.1
        record = take(record, now, interactive=False)
    assert len(record.live(now)) == POLICY.budget - POLICY.reserve
    assert isinstance(admit(record, now + 0.1, POLICY, "bg", interactive=False), Wait)
    assert isinstance(admit(record, now + 0.1, POLICY, "read", interactive=True), Take)
    # once reads have been quiet a while, background may use the whole budget again
    quiet = T0 + READS_RECENT_SECONDS + 0.01
    assert isinstance(admit(record, quiet, POLICY, "bg", interactive=False), Take)


def test_a_waiting_read_goes_before_background_work_that_waited_longer() -> None:
    record = LogRecord(line=(Ticket("bg", False, T0 - 5, T0 + 9),))
    read = Ticket("read", True, T0, T0 + 5)
    record = record.with_ticket(read)
    one_free = full(T0)
    one_free = replace(one_free, slots=(replace(one_free.slots[0], expires=T0, answered=True), *one_free.slots[1:]))
    one_free = replace(one_free, line=record.line)
    assert isinstance(admit(one_free, T0 + 0.5, POLICY, "read", True, read), Take)
    assert isinstance(admit(one_free, T0 + 0.5, POLICY, "bg", False, record.line[0]), Wait)


def test_within_a_class_the_first_to_join_is_first_served_and_a_newcomer_queues_behind() -> None:
    one_free = full(T0)
    one_free = replace(one_free, slots=(replace(one_free.slots[0], expires=T0, answered=True), *one_free.slots[1:]))
    first, second = Ticket("a", True, T0 + 0.1, T0 + 5), Ticket("b", True, T0 + 0.2, T0 + 5)
    record = replace(one_free, line=(second, first))
    assert isinstance(admit(record, T0 + 0.5, POLICY, "b", True, second), Wait)
    assert isinstance(admit(record, T0 + 0.5, POLICY, "new", True), Wait)
    taken = admit(record, T0 + 0.5, POLICY, "a", True, first)
    assert isinstance(taken, Take) and taken.leaves == ("a",) and taken.applied(record).line == (second,)


def test_a_waiter_plans_its_turn_from_its_place_in_line() -> None:
    """Ten slots held, answered at staggered times: the k-th in line is planned on the k-th slot to free, and the
    eleventh on the first slot again, a call and a second later."""
    record = full(T0)
    slots = tuple(replace(s, expires=T0 + 1 + 0.1 * i, answered=True) for i, s in enumerate(record.slots))
    line = tuple(Ticket(f"t{k}", True, T0 + 0.01 * k, T0 + 20) for k in range(11))
    record = replace(record, slots=slots, line=line)
    plans = [admit(record, T0 + 0.5, POLICY, t.id, True, t) for t in line]
    assert all(isinstance(p, Wait) for p in plans)
    starts = [p.start for p in plans if isinstance(p, Wait)]
    assert starts[:10] == pytest.approx([T0 + 1 + 0.1 * i + CLOCK_SKEW_MARGIN for i in range(10)])
    assert starts[10] > starts[0] + HOLD_AFTER_ANSWER and starts == sorted(starts)


def test_a_lapsed_ticket_holds_no_one_back_and_leaves_with_the_next_permit() -> None:
    lapsed = Ticket("gone", True, T0 - 3, T0 - 1)
    record = LogRecord(line=(lapsed,))
    decision = admit(record, T0, POLICY, "new", True)
    assert isinstance(decision, Take) and decision.leaves == ("gone",)


def test_a_throttle_cuts_the_deployment_rate_once_per_call_sent_at_the_rate_before() -> None:
    record = cut(LogRecord(), T0, budget=10, sent=T0 - 0.1)
    assert record is not None and record.rate(T0, 10) == pytest.approx(0.85 * 8.99)
    assert cut(record, T0 + 0.5, budget=10, sent=T0 - 0.05) is None  # sent before the cut: the same congestion
    again = cut(record, T0 + 0.5, budget=10, sent=T0 + 0.2)  # sent at the new rate, still too much
    assert again is not None and again.rate(T0 + 0.5, 10) < record.rate(T0 + 0.5, 10)


def test_after_a_throttle_the_rate_holds_under_two_calls_below_it_then_probes_back_to_the_budget() -> None:
    record = cut(LogRecord(), T0, budget=10, sent=T0)
    assert record is not None
    record = replace(record, rate_max=7.3)  # throttled at 7 calls a second
    rate = lambda t: record.rate(T0 + t, 10)
    assert rate(0) == rate(HOLD_SECONDS) == pytest.approx(0.85 * 5.99)  # 5 whole calls, level
    assert int(rate(HOLD_SECONDS + 0.1)) == 5 and int(rate(HOLD_SECONDS + PROBE_SECONDS + 0.1)) == 6
    assert int(rate(HOLD_SECONDS + 2 * PROBE_SECONDS + 0.1)) == 7  # one call more at a time
    assert rate(HOLD_SECONDS + 5 * PROBE_SECONDS) == 10.0


def test_a_cut_rate_caps_live_permits_and_spaces_sends() -> None:
    record = cut(LogRecord(), T0, budget=10, sent=T0)
    assert record is not None
    now = T0
    taken = 0
    while isinstance(decision := admit(record, now, POLICY, f"h{taken}", interactive=True), Take):
        record, taken = decision.applied(record), taken + 1
    assert taken == 7  # floor(0.85 * 8.99) whole calls per second
    background = admit(record, now, POLICY, "bg", interactive=False)
    assert isinstance(background, Wait) and background.until >= now + 1 / 7.7 - LOOKAHEAD_SECONDS
