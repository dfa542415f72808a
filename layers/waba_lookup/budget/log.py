"""The budget's record and its transitions: pure functions of (record, now). The rules are in the package docstring."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field, replace

from waba_lookup.settings import CAMS_MAX_QPS

HOLD_AFTER_ANSWER = 1.0  # a call may arrive as late as its answer, and counts in CAMS's window for a second
# Lambda and FC hosts keep their clocks with the providers' time services (Amazon Time Sync, Alibaba Cloud NTP),
# whose error is around a millisecond; twenty times that costs 2% of the throughput.
CLOCK_SKEW_MARGIN = 0.02
READS_RECENT_SECONDS = 3.0  # background permits leave the interactive reserve free this long after a read
# A permit's call is sent once its take comes back: one never answered counts from its start for this, the longest
# call and a second. It is the longest a store request can take, its client's timeout (DynamoDB 3 s, Tablestore 2 s);
# a take that comes back later all the same is given up unused, as a failing store
TAKE_LONGEST_SECONDS = 3.0
LOOKAHEAD_SECONDS = 0.05  # a permit may be taken this long before its slot frees: the write overlaps the wait
TICKET_GRACE_SECONDS = 1.0  # a place in line lapses this long after the turn its holder planned
TURN_SLACK_SECONDS = 0.03  # planned per holder ahead in the same slot: a turn a little late costs less than early
TYPICAL_CALL_SECONDS = 0.3  # a call's length for planning turns, until the record shows answered calls
# The deployment's level after System.LimitControl (see the package docstring for why each number)
PROBE_FIRST = 6.0  # seconds between probes after a throttle; doubled by each throttle in a row...
PROBE_LONGEST = 12.0  # ...up to this
PROBE_OPEN = 1.0  # a probe lets its extra permits start until its top slot is taken, for this long at most
PROBE_NEXT = 1.0  # seconds from a probe that passed to the next: its calls leave CAMS's window...
PROBE_AGAIN = 2.0  # ...then between probes, while a pass waits for a throttle to undo it
CLIMB_BEFORE_DOUBLING = 3  # passes raise the level one slot at a time this far, then the step doubles


@dataclass(frozen=True)
class Slot:
    holder: str = ""  # the permit's id ("" never used)
    sent: float = 0.0  # when the permit starts: its holder sends no earlier
    expires: float = 0.0  # when it stops counting (before the skew margin)
    answered: bool = True
    interactive: bool = False

    def live(self, now: float) -> bool:
        return self.expires + CLOCK_SKEW_MARGIN > now

    def surely_free(self) -> float:
        """From when a new permit may start in this slot, whatever happens meanwhile."""
        return self.expires + CLOCK_SKEW_MARGIN if self.holder else 0.0

    def likely_free(self, now: float, call_seconds: float) -> float:
        """When it will probably free: for a permit not yet answered, a typical call after its start, plus a second."""
        if not self.live(now):
            return now
        if self.answered:
            return self.surely_free()
        return min(self.expires, max(now, self.sent + call_seconds) + HOLD_AFTER_ANSWER) + CLOCK_SKEW_MARGIN


@dataclass(frozen=True)
class Ticket:
    """A place in line: reads before background work, then first come, first served."""

    id: str
    interactive: bool
    joined: float
    expires: float  # it stops counting then: its holder gave up, timed out or died
    # our own ticket only: the tickets already in line when its join was written (the store's order of arrival)
    seen: frozenset[str] | None = field(default=None, compare=False)

    @property
    def order(self) -> tuple[bool, float, str]:
        return (not self.interactive, self.joined, self.id)

    def behind(self, other: Ticket) -> bool:
        """Whether this ticket waits behind `other`: reads first; within a class, by arrival in the store where
        this ticket knows it (`seen`), else by the time each joined. Waiters that joined a few milliseconds apart
        reach the store in either order: each counting only those its own join found keeps every rank unique."""
        if self.seen is None or other.interactive != self.interactive:
            return other.order < self.order
        return other.id in self.seen


def _empty_slots() -> tuple[Slot, ...]:
    return tuple(Slot() for _ in range(CAMS_MAX_QPS))


def probe_period(pending: bool, failures: float) -> float:
    """Between probes: short while a pass is `pending` (a throttle would undo it), else longer after each throttle
    in a row."""
    return PROBE_AGAIN if pending else min(PROBE_LONGEST, PROBE_FIRST * 2 ** max(0.0, failures - 1))


@dataclass(frozen=True)
class LogRecord:
    slots: tuple[Slot, ...] = field(default_factory=_empty_slots)
    line: tuple[Ticket, ...] = ()  # in no particular order: `waiting` sorts it
    next_send: float = 0.0  # background permits are spaced 1/rate apart
    level: float = 0.0  # the slots usable after a throttle (a whole number); 0: never throttled
    base: float = 0.0  # the level before the first probe passed since the last throttle; 0: none passed
    changed_at: float = 0.0  # when the level last changed
    probe_from: float = 0.0  # when probes open: `step` + 1 slots more for PROBE_OPEN, every `period`
    step: float = 1.0  # what a passed probe adds to the level (1, 1, 1, then 2, 4: see `passed`)
    failures: float = 0.0  # throttles since the level left the budget: they space the probes
    reads_at: float = 0.0  # the last interactive permit

    def level_at(self, budget: int) -> int:
        return budget if not self.level else min(budget, int(self.level))

    @property
    def period(self) -> float:
        return probe_period(bool(self.base), self.failures)

    def opened(self, t: float, budget: int) -> float | None:
        """When the probe open at `t` opened (a call started then is part of it), if one is."""
        if self.level_at(budget) >= budget or t < self.probe_from:
            return None
        opened = t - (t - self.probe_from) % self.period
        return opened if t - opened < PROBE_OPEN else None

    def probing(self, now: float, budget: int) -> bool:
        """Whether a probe is open now: one opened, and its top slot not yet taken since."""
        opened = self.opened(now, budget)
        return opened is not None and self.slots[self.top(budget)].sent < opened

    def top(self, budget: int) -> int:
        """A probe's top slot: the last of the level, `step` and one more."""
        return min(budget, self.level_at(budget) + int(self.step) + 1) - 1

    def rate(self, now: float, budget: int) -> float:
        """The slots the deployment may use now: the budget, the level after a throttle, more while a probe is open."""
        level = self.level_at(budget)
        return float(self.top(budget) + 1 if self.probing(now, budget) else level)

    def live(self, now: float) -> list[Slot]:
        return [s for s in self.slots if s.live(now)]

    def waiting(self, now: float) -> list[Ticket]:
        """The line: tickets not lapsed, in order."""
        return sorted((t for t in self.line if t.expires + CLOCK_SKEW_MARGIN > now), key=lambda t: t.order)

    def lapsed(self, now: float) -> list[Ticket]:
        return [t for t in self.line if t.expires + CLOCK_SKEW_MARGIN <= now]

    def call_seconds(self) -> float:
        """How long calls take, from the answered permits in the record."""
        answered = [s.expires - HOLD_AFTER_ANSWER - s.sent for s in self.slots if s.holder and s.answered]
        return max(0.0, sum(answered) / len(answered)) if answered else TYPICAL_CALL_SECONDS

    def answered(self, index: int, holder: str, expires: float) -> LogRecord:
        """The record with the permit in slot `index` answered, if `holder` still holds it."""
        slot = self.slots[index]
        if slot.holder != holder:
            return self
        slots = self.slots[:index] + (replace(slot, expires=expires, answered=True),) + self.slots[index + 1 :]
        return replace(self, slots=slots)

    def with_ticket(self, ticket: Ticket) -> LogRecord:
        return replace(self, line=(*(t for t in self.line if t.id != ticket.id), ticket))


@dataclass(frozen=True)
class Policy:
    budget: int  # CAMS_QPS_BUDGET
    reserve: int  # CAMS_INTERACTIVE_RESERVE
    longest_call: float  # connect + read timeout: how long an unanswered permit can stay in flight


@dataclass(frozen=True)
class Take:
    """A permit to write: slot `index` becomes `slot`, on condition that the slot is free by the permit's start and
    that the level has not changed since the record it was planned from (`changed_at`): a throttle cut while a
    waiter slept makes its planned slot fail, and it plans again from the record the failed write returns."""

    index: int
    slot: Slot
    next_send: float | None  # background: the next background start
    reads_at: float | None  # interactive: now
    leaves: tuple[str, ...]  # tickets leaving the line in the same write: the taker's own, and lapsed ones
    changed_at: float  # the level's last change, in the record this permit was planned from

    def applied(self, record: LogRecord) -> LogRecord:
        """The record after this write, as far as its writer knows."""
        slots = record.slots[: self.index] + (self.slot,) + record.slots[self.index + 1 :]
        changes: dict[str, object] = {"slots": slots, "line": tuple(t for t in record.line if t.id not in self.leaves)}
        if self.next_send is not None:
            changes["next_send"] = self.next_send
        if self.reads_at is not None:
            changes["reads_at"] = self.reads_at
        return replace(record, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Wait:
    until: float  # look again then (wall time): a moment before the planned turn
    index: int  # the slot the turn is planned in (-1: none yet)
    start: float = 0.0  # the planned turn: when that slot should free


def usable(record: LogRecord, now: float, policy: Policy, interactive: bool) -> int:
    """How many slots (the first ones) this class of permit may use: the budget, or the rate after a throttle,
    less the interactive reserve for background work while reads are recent."""
    cap = int(record.rate(now, policy.budget))
    if not interactive and now - record.reads_at < READS_RECENT_SECONDS:
        cap -= policy.reserve
    return max(0, min(cap, len(record.slots)))


def admit(
    record: LogRecord, now: float, policy: Policy, holder: str, interactive: bool, ticket: Ticket | None = None
) -> Take | Wait:
    """A permit for `holder` if one may start by now + LOOKAHEAD_SECONDS and no one ahead in line is owed it;
    else the turn its place in line plans for. Without a `ticket`, the holder would join the line now."""
    slots = usable(record, now, policy, interactive)
    if not slots:  # the reserve is all there is: nothing for background until reads are quiet
        return Wait(record.reads_at + READS_RECENT_SECONDS, -1)
    me = ticket or Ticket(holder, interactive, now, now)
    ahead = [t for t in record.waiting(now) if t.id != holder and me.behind(t)]
    floor = now if interactive else max(now, record.next_send)
    starts = sorted((max(floor, record.slots[i].surely_free()), i) for i in range(slots))
    free = [(start, i) for start, i in starts if start <= now + LOOKAHEAD_SECONDS]
    if len(ahead) < len(free):
        start, index = free[len(ahead)]
        return take(record, now, policy, holder, interactive, index, start, ticket)
    return _plan(record, now, policy, interactive, slots, ahead)


def take(
    record: LogRecord,
    now: float,
    policy: Policy,
    holder: str,
    interactive: bool,
    index: int,
    start: float,
    ticket: Ticket | None,
) -> Take:
    """The write that takes slot `index` from `start` (the store's condition decides whether it is free)."""
    if not 0 <= index < policy.budget:  # a slot outside the record would be a permit nobody counts
        raise ValueError(f"no slot {index} in a budget of {policy.budget}")
    never_answered = start + TAKE_LONGEST_SECONDS + policy.longest_call + HOLD_AFTER_ANSWER
    slot = Slot(holder, start, never_answered, answered=False, interactive=interactive)
    leaves = tuple(t.id for t in record.lapsed(now))[:8] + ((ticket.id,) if ticket else ())
    if interactive:
        return Take(index, slot, None, now, leaves, record.changed_at)
    next_send = max(record.next_send, start) + 1 / record.rate(now, policy.budget)
    return Take(index, slot, next_send, None, leaves, record.changed_at)


def _plan(record: LogRecord, now: float, policy: Policy, interactive: bool, slots: int, ahead: list[Ticket]) -> Wait:
    """When this waiter's turn should come: each one ahead takes the slot likely to free first, and holds it a
    typical call and a second; this one takes the next."""
    call = record.call_seconds()
    frees = [(record.slots[i].likely_free(now, call), i) for i in range(slots)]
    heapq.heapify(frees)
    for _ in ahead:
        at, i = heapq.heappop(frees)
        heapq.heappush(frees, (at + call + HOLD_AFTER_ANSWER + CLOCK_SKEW_MARGIN + TURN_SLACK_SECONDS, i))
    at, index = heapq.heappop(frees)
    if not interactive:  # and background sends are spaced
        spaced = record.next_send + sum(not t.interactive for t in ahead) / record.rate(now, policy.budget)
        at = max(at, spaced)
    return Wait(max(now, at - LOOKAHEAD_SECONDS), index, at)


def in_window(records: list[LogRecord], sent: float) -> int:
    """Our calls in CAMS's window when a call started at `sent` arrived, itself included, from copies of the
    record (a slot may have been taken again since one of them was read)."""
    return len({s.holder for r in records for s in r.slots if s.holder and sent - 1.0 < s.sent <= sent})


def cut(record: LogRecord, now: float, budget: int, sent: float, ours: int) -> LogRecord | None:
    """CAMS flow-controlled a call started at `sent`, when `ours` of our calls were in its window: the new level.
    After a probe passed, before the next: back to where it was before that pass (the room it found was a
    neighbour's refused call). A probe's call (or one that met a probe's: more than the level): the level stands if
    the probe's first call more fitted, else it is at the edge and leaves one to spare. Any other throttle halves
    it. None when the call started within a second of the last change: the window it met held calls from before."""
    if record.level and sent < record.changed_at + HOLD_AFTER_ANSWER:
        return None
    old, base = record.level_at(budget), int(record.base)
    if base and base < old:
        level = base
    elif record.opened(sent, budget) is not None or ours > old:
        level = max(1, old - 1, min(old, ours - 2))
    else:
        level = max(1, old // 2)
    failures = 1.0 if old == budget else record.failures + 1
    probe_from = now + probe_period(False, failures)
    return replace(
        record, level=float(level), base=0.0, changed_at=now, probe_from=probe_from, step=1.0, failures=failures
    )


def top_of_probe(record: LogRecord, budget: int, index: int, sent: float) -> bool:
    """Whether slot `index`, taken at `sent`, is the top slot of a probe open then: its call's answer may pass it."""
    return record.opened(sent, budget) is not None and index == record.top(budget)


def passed(record: LogRecord, now: float, budget: int, index: int, sent: float, ours: int) -> LogRecord | None:
    """CAMS accepted a call started at `sent` in slot `index`, when `ours` of our calls were in its window: if that
    is the top slot of an open probe and the window held the level it would rise to, it rises by the probe's step. The
    next probe comes soon. A false pass (the room was a neighbour's refused call) comes just above the room, where
    each probe too far costs the neighbour a call: passes climb one slot at a time until CLIMB_BEFORE_DOUBLING above
    where they began, then twice as far each time (three passes in a row are seldom all a neighbour's refusals)."""
    level, step = record.level_at(budget), int(record.step)
    if not top_of_probe(record, budget, index, sent) or ours < min(budget, level + step):
        return None
    base = record.base or float(level)  # where a throttle takes it back to: before the first pass since the last
    raised = float(min(budget, level + step))
    next_step = 2 * record.step if raised - base >= CLIMB_BEFORE_DOUBLING else record.step
    return replace(record, level=raised, base=base, changed_at=now, probe_from=now + PROBE_NEXT, step=next_step)
