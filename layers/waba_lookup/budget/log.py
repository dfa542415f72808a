"""The budget's record and its transitions: pure functions of (record, now). The rules are in the package docstring."""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field, replace

from waba_lookup.settings import CAMS_MAX_QPS

HOLD_AFTER_ANSWER = 1.0  # a call may arrive as late as its answer, and counts in CAMS's window for a second
# Lambda and FC hosts keep their clocks with the providers' time services (Amazon Time Sync, Alibaba Cloud NTP),
# whose error is around a millisecond; twenty times that costs 2% of the throughput.
CLOCK_SKEW_MARGIN = 0.02
READS_RECENT_SECONDS = 3.0  # background permits leave the interactive reserve free this long after a read
LOOKAHEAD_SECONDS = 0.05  # a permit may be taken this long before its slot frees: the write overlaps the wait
TICKET_GRACE_SECONDS = 1.0  # a place in line lapses this long after the turn its holder planned
TURN_SLACK_SECONDS = 0.03  # planned per holder ahead in the same slot: a turn a little late costs less than early
TYPICAL_CALL_SECONDS = 0.3  # a call's length for planning turns, until the record shows answered calls
# The deployment's rate after System.LimitControl (see the package docstring for why each number)
BETA = 0.85
HOLD_SECONDS = 20.0
PROBE_SECONDS = 4.0
PLATEAU_BELOW = 1.01
MIN_RATE = 0.5


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

    @property
    def order(self) -> tuple[bool, float, str]:
        return (not self.interactive, self.joined, self.id)


def _empty_slots() -> tuple[Slot, ...]:
    return tuple(Slot() for _ in range(CAMS_MAX_QPS))


@dataclass(frozen=True)
class LogRecord:
    slots: tuple[Slot, ...] = field(default_factory=_empty_slots)
    line: tuple[Ticket, ...] = ()  # in no particular order: `waiting` sorts it
    next_send: float = 0.0  # background permits are spaced 1/rate apart
    rate_max: float = 0.0  # the rate CAMS last throttled; 0: never throttled
    throttled_at: float = 0.0
    reads_at: float = 0.0  # the last interactive permit

    def rate(self, now: float, budget: int) -> float:
        """The deployment's calls per second: the budget, or after a throttle the curve back up to it."""
        if not self.rate_max:
            return float(budget)
        level = BETA * max(MIN_RATE, math.floor(self.rate_max) - PLATEAU_BELOW)
        curve = level + max(0.0, now - self.throttled_at - HOLD_SECONDS) / PROBE_SECONDS
        return max(MIN_RATE, min(float(budget), curve))

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
    """A permit to write: slot `index` becomes `slot`, on condition that the slot is free by the permit's start."""

    index: int
    slot: Slot
    next_send: float | None  # background: the next background start
    reads_at: float | None  # interactive: now
    leaves: tuple[str, ...]  # tickets leaving the line in the same write: the taker's own, and lapsed ones

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
    rate = record.rate(now, policy.budget)
    cap = policy.budget if rate >= policy.budget else max(1, math.floor(rate))
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
    me = ticket.order if ticket else (not interactive, now, holder)
    ahead = [t for t in record.waiting(now) if t.order < me and t.id != holder]
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
    slot = Slot(holder, start, start + policy.longest_call + HOLD_AFTER_ANSWER, answered=False, interactive=interactive)
    leaves = tuple(t.id for t in record.lapsed(now))[:8] + ((ticket.id,) if ticket else ())
    if interactive:
        return Take(index, slot, None, now, leaves)
    next_send = max(record.next_send, start) + 1 / record.rate(now, policy.budget)
    return Take(index, slot, next_send, None, leaves)


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


def cut(record: LogRecord, now: float, budget: int, sent: float) -> LogRecord | None:
    """CAMS flow-controlled a call sent at `sent`: cut the deployment's rate. None when the call was sent before the
    last cut: it tells of the congestion that cut answered, not of the rate since."""
    if record.rate_max and sent < record.throttled_at + CLOCK_SKEW_MARGIN:
        return None
    return replace(record, rate_max=record.rate(now, budget), throttled_at=now)
