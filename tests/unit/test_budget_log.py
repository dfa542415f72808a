"""The budget's record, transition by transition, under a fake clock (times are plain numbers)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from waba_lookup.budget import log
from waba_lookup.budget.log import LogRecord, Policy, Take, Ticket, Wait, admit, cut, in_window, passed

POLICY = Policy(budget=10, reserve=2, longest_call=6.0)
T0 = 1_000.0


def take(record: LogRecord, now: float, interactive: bool = True, policy: Policy = POLICY) -> LogRecord:
    decision = admit(record, now, policy, f"p{now}", interactive)
    assert isinstance(decision, Take), decision
    return decision.applied(record)


def answer(record: LogRecord, holder_sent: float, now: float) -> LogRecord:
    slots = [
        replace(s, expires=now + log.HOLD_AFTER_ANSWER, answered=True) if s.holder == f"p{holder_sent}" else s
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
    frees_at = T0 + 0.2 + log.HOLD_AFTER_ANSWER + log.CLOCK_SKEW_MARGIN
    wait = admit(record, T0 + 0.5, POLICY, "x", True)
    assert isinstance(wait, Wait) and wait.until == pytest.approx(frees_at - log.LOOKAHEAD_SECONDS)
    # it may be taken a moment ahead, but it starts when the slot frees, not before
    assert starts_at(record, frees_at - log.LOOKAHEAD_SECONDS - 0.001) is None
    assert starts_at(record, frees_at - log.LOOKAHEAD_SECONDS + 0.001) == pytest.approx(frees_at)
    assert starts_at(record, frees_at + 0.3) == frees_at + 0.3


def test_an_unanswered_permit_counts_until_send_plus_the_longest_call_and_a_second() -> None:
    """A holder that never writes back (frozen, killed) frees its slot only at the worst case: its take came back as
    late as it may, and its call took the longest."""
    record = take(LogRecord(), T0)
    small = Policy(budget=1, reserve=0, longest_call=6.0)
    worst = T0 + log.TAKE_LONGEST_SECONDS + 6.0 + log.HOLD_AFTER_ANSWER + log.CLOCK_SKEW_MARGIN
    assert starts_at(record, worst - log.LOOKAHEAD_SECONDS - 0.001, policy=small) is None
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
    frees_at = T0 + 0.5 + log.HOLD_AFTER_ANSWER + log.CLOCK_SKEW_MARGIN
    assert isinstance(decision, Wait) and decision.until == pytest.approx(frees_at - log.LOOKAHEAD_SECONDS)
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
    quiet = T0 + log.READS_RECENT_SECONDS + 0.01
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
    assert starts[:10] == pytest.approx([T0 + 1 + 0.1 * i + log.CLOCK_SKEW_MARGIN for i in range(10)])
    assert starts[10] > starts[0] + log.HOLD_AFTER_ANSWER and starts == sorted(starts)


def test_waiters_whose_joins_reach_the_store_out_of_clock_order_plan_different_turns() -> None:
    """Two reads join a full record a few milliseconds apart, and reach the store in the other order: b's join
    finds no one in line, a's (whose clock read earlier) finds b. Each plans from what its own join found."""
    record = full(T0)
    b = Ticket("b", True, T0 + 0.01, T0 + 5, seen=frozenset())
    a = Ticket("a", True, T0, T0 + 5, seen=frozenset({"b"}))
    plan_b = admit(replace(record, line=(b,)), T0 + 0.02, POLICY, "b", True, b)
    plan_a = admit(replace(record, line=(b, a)), T0 + 0.02, POLICY, "a", True, a)
    assert isinstance(plan_a, Wait) and isinstance(plan_b, Wait)
    assert (plan_a.index, plan_a.start) != (plan_b.index, plan_b.start)
    # once b sees a, a (earlier by its clock, but after b in the store) is still behind it
    assert admit(replace(record, line=(b, a)), T0 + 0.02, POLICY, "b", True, b) == plan_b
    # by the time each joined alone, both would have planned the first turn, and one would lose its take
    blind_a = admit(replace(record, line=(b, a)), T0 + 0.02, POLICY, "a", True, replace(a, seen=None))
    assert isinstance(blind_a, Wait) and (blind_a.index, blind_a.start) == (plan_b.index, plan_b.start)


def test_a_lapsed_ticket_holds_no_one_back_and_leaves_with_the_next_permit() -> None:
    lapsed = Ticket("gone", True, T0 - 3, T0 - 1)
    record = LogRecord(line=(lapsed,))
    decision = admit(record, T0, POLICY, "new", True)
    assert isinstance(decision, Take) and decision.leaves == ("gone",)


def test_our_calls_in_cams_window_count_each_permit_once_across_copies_of_the_record() -> None:
    record = LogRecord()
    for i in range(4):
        record = take(record, T0 + 0.3 * i + 4e-7)  # at 0, 0.3, 0.6, 0.9 (and a wall clock's digits)
    stored = replace(record, slots=tuple(replace(s, sent=round(s.sent, 6)) for s in record.slots))
    assert in_window([record], T0 + 0.9 + 4e-7) == 4
    assert in_window([stored, record], T0 + 0.9 + 4e-7) == 4  # the store's copy, its times rounded: the same permits
    assert in_window([record], T0 + 1.2) == 3  # the one at 0 has left the window


def test_a_throttle_outside_a_probe_halves_the_level_once_per_change() -> None:
    record = cut(LogRecord(), T0, budget=10, sent=T0 - 0.1, ours=8)
    assert record is not None and record.rate(T0, 10) == 5  # halved
    # the window a call met within a second of the change still held calls from before: it tells nothing new
    assert cut(record, T0 + 0.5, budget=10, sent=T0 + 0.5, ours=5) is None
    again = cut(record, T0 + 1.5, budget=10, sent=T0 + 1.2, ours=5)
    assert again is not None and again.rate(T0 + 1.5, 10) == 2


def test_probes_open_two_slots_more_until_tried_each_period_slower_after_each_throttle() -> None:
    record = cut(LogRecord(), T0, budget=10, sent=T0, ours=7)
    assert record is not None and record.level == 5
    rate = lambda r, t: r.rate(T0 + t, 10)
    first = log.PROBE_FIRST
    assert rate(record, first - 0.01) == 5 and rate(record, first) == rate(record, first + 0.99) == 7
    # it closes once its top slot is taken, and opens again the next period
    top = replace(record.slots[6], holder="top", sent=T0 + first + 0.3)
    tried = replace(record, slots=(*record.slots[:6], top, *record.slots[7:]))
    assert rate(tried, first + 0.5) == 5 and rate(tried, 2 * first) == 7
    # untried, it stays open PROBE_OPEN at most: here, after two throttles, a second in every twice as many
    slower = replace(record, failures=2.0)
    assert slower.period == 2 * first and rate(slower, first + log.PROBE_OPEN) == 5
    assert rate(slower, first + 2 * first + 0.5) == 7
    # a probe's call refused: no room for 7; the level stays and the probes come slower
    failed = cut(record, T0 + first + 0.3, budget=10, sent=T0 + first + 0.2, ours=7)
    assert failed is not None and failed.level == 5 and failed.period == 2 * first
    # its first call more refused: the level itself is at the edge; it leaves one to spare
    edge = cut(record, T0 + first + 0.3, budget=10, sent=T0 + first + 0.2, ours=6)
    assert edge is not None and edge.level == 4
    # the same when a call just after the probe met its calls in CAMS's window: more than the level
    after = cut(record, T0 + first + 1.2, budget=10, sent=T0 + first + 1.1, ours=7)
    assert after is not None and after.level == 5
    for _ in range(5):
        failed = replace(failed, failures=failed.failures + 1)
    assert failed.period == log.PROBE_LONGEST


def test_a_probe_passes_when_the_window_held_the_level_it_raises_to_then_the_step_doubles() -> None:
    record = cut(LogRecord(), T0, budget=10, sent=T0, ours=7)
    assert record is not None
    at = T0 + log.PROBE_FIRST + 0.1
    assert passed(record, at, 10, index=5, sent=at, ours=7) is None  # not the probe's top slot
    assert passed(record, at, 10, index=6, sent=at, ours=5) is None  # our level's calls, no more: not room
    assert passed(record, at, 10, index=6, sent=T0 + 1.0, ours=7) is None  # started before the probe opened
    level = passed(record, at, 10, index=6, sent=at, ours=6)
    assert level is not None and (level.level, level.base, level.step) == (6, 5, 1)
    # the next probe, a second later, tests one more again, until three above the base; then twice as far: back
    # to the budget in four passes
    for index, raised in ((7, 7), (8, 8), (9, 10)):
        at += log.PROBE_NEXT
        assert level.rate(at, 10) == index + 1
        level = passed(level, at, 10, index=index, sent=at, ours=index + 1)
        assert level is not None and level.level == raised
    assert level.rate(at + 100, 10) == 10


def test_a_throttle_after_passes_goes_back_to_the_level_before_the_first() -> None:
    record = cut(LogRecord(), T0, budget=10, sent=T0, ours=7)
    assert record is not None
    at = T0 + log.PROBE_FIRST + 0.1
    raised = passed(record, at, 10, index=6, sent=at, ours=7)
    assert raised is not None and raised.level == 6
    # our call refused at 6, outside a probe: the pass was a neighbour's refused call, not room
    back = cut(raised, at + 2.3, 10, sent=at + 2.2, ours=6)
    assert back is not None and (back.level, back.base) == (5, 0)
    # two passes, then a throttle: back before both
    twice = passed(raised, at + 1.1, 10, index=7, sent=at + 1.1, ours=7)
    assert twice is not None and (twice.level, twice.base) == (7, 5)
    assert (cut(twice, at + 2.3, 10, sent=at + 2.2, ours=6) or twice).level == 5
    lower = cut(back, at + 3.6, 10, sent=at + 3.5, ours=5)  # and again, outside a probe: now halved
    assert lower is not None and lower.level == 2


def test_a_cut_rate_caps_live_permits_and_spaces_sends() -> None:
    record = cut(LogRecord(), T0, budget=10, sent=T0, ours=10)
    assert record is not None
    now = T0
    taken = 0
    while isinstance(decision := admit(record, now, POLICY, f"h{taken}", interactive=True), Take):
        record, taken = decision.applied(record), taken + 1
    assert taken == 5  # half the budget
    background = admit(record, now, POLICY, "bg", interactive=False)
    assert isinstance(background, Wait) and background.until >= now + 1 / 5 - log.LOOKAHEAD_SECONDS
