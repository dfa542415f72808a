"""The shared budget's record, a sliding log of permits, and its transitions: pure functions of (record, now).

The record has one slot per call the quota allows (CAMS_MAX_QPS). A slot holds one permit: its send time and, once
known, when it stops counting. A permit is live from its send until one second after its answer (CAMS counts a
call when it arrives, somewhere in between); until the answer is written back, until send + the longest call + one
second. A new permit takes any slot whose permit is no longer live, and only while fewer than the budget are live:
if at most `budget` permits are ever live at once, no one-second window of arrivals holds more than `budget` calls.
(A FIFO ring of the last `budget` permits would not do: a slow call still live outside the ring would be forgotten.)

Times are wall-clock seconds (every instance reads its own clock), so every liveness test keeps CLOCK_SKEW_MARGIN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from waba_lookup.settings import CAMS_MAX_QPS

HOLD_AFTER_ANSWER = 1.0  # a call may arrive as late as its answer, and counts in CAMS's window for a second
# Lambda and FC hosts keep their clocks with the providers' time services (Amazon Time Sync, Alibaba Cloud NTP),
# whose error is around a millisecond. Twenty times that costs 2% of the throughput (each permit holds its slot
# about 1.02 s instead of 1.0 s) and still covers a host that has drifted for a while between syncs.
CLOCK_SKEW_MARGIN = 0.02
READS_RECENT_SECONDS = 3.0  # background refreshes leave the interactive reserve free this long after a read
READS_WAITING_SECONDS = 0.5  # a waiting read blocks new background permits this long (renewed while it waits)
# The deployment's adaptive rate after System.LimitControl: cut multiplicatively, as botocore's adaptive mode does,
# but from a plateau two whole calls under the throttled rate (PLATEAU_BELOW), held level for HOLD_SECONDS, then
# one more call a second every PROBE_SECONDS until CAMS throttles again or the budget is reached (about 40 s after
# a neighbour has gone). Each choice is from `make bench`'s neighbour scenario:
# - two calls, not one: our permits start the moment our own oldest call leaves CAMS's window, so one call under
#   the congestion CAMS rejects the neighbour's calls and never ours, and we would never hear of it (81-91% kept);
# - level, not CUBIC's concave rise: rising straight after a cut, the rate passed the level where we would have
#   been throttled before we heard, and the next cut then left us one call too high (81-86% kept in some runs);
# - BETA 0.85, not botocore's 0.7: under a plateau already two calls down, 30% more cost a whole call for as long
#   as the hold (4.75 calls/s of the 6 a neighbour at 4/s leaves, where 4.8 is the aim).
BETA = 0.85
HOLD_SECONDS = 20.0
PROBE_SECONDS = 4.0
PLATEAU_BELOW = 1.01
MIN_RATE = 0.5
# A permit may be taken this long before it starts, so the conditional write happens while the previous holder's
# slot runs out rather than after it: a slot is then idle for the skew margin only, not the write's round trip.
LOOKAHEAD_SECONDS = 0.05


@dataclass(frozen=True)
class Slot:
    holder: str = ""  # the permit's id ("" never used)
    sent: float = 0.0
    expires: float = 0.0  # when it stops counting (before the skew margin)
    answered: bool = True
    interactive: bool = False

    def live(self, now: float) -> bool:
        return self.expires + CLOCK_SKEW_MARGIN > now

    def earliest_free(self, now: float) -> float:
        """The soonest it could stop counting: at `expires`, or if unanswered, a second after an answer now."""
        until = self.expires if self.answered else min(self.expires, now + HOLD_AFTER_ANSWER)
        return until + CLOCK_SKEW_MARGIN


def _empty_slots() -> tuple[Slot, ...]:
    return tuple(Slot() for _ in range(CAMS_MAX_QPS))


@dataclass(frozen=True)
class LogRecord:
    version: str = ""  # changes on every write; "" until first stored
    slots: tuple[Slot, ...] = field(default_factory=_empty_slots)
    next_send: float = 0.0  # background permits are spaced 1/rate apart
    rate_max: float = 0.0  # the rate CAMS last throttled; 0: never throttled
    throttled_at: float = 0.0
    reads_at: float = 0.0  # the last interactive permit or wait
    reads_waiting_until: float = 0.0

    def rate(self, now: float, budget: int) -> float:
        """The deployment's calls per second: the budget, or after a throttle the curve back up to it."""
        if not self.rate_max:
            return float(budget)
        level = BETA * max(MIN_RATE, math.floor(self.rate_max) - PLATEAU_BELOW)
        curve = level + max(0.0, now - self.throttled_at - HOLD_SECONDS) / PROBE_SECONDS
        return max(MIN_RATE, min(float(budget), curve))

    def live(self, now: float) -> list[Slot]:
        return [s for s in self.slots if s.live(now)]


@dataclass(frozen=True)
class Policy:
    budget: int  # CAMS_QPS_BUDGET
    reserve: int  # CAMS_INTERACTIVE_RESERVE
    longest_call: float  # connect + read timeout: how long an unanswered permit can stay in flight


@dataclass(frozen=True)
class Admitted:
    record: LogRecord  # to be written, conditional on the version read
    index: int


@dataclass(frozen=True)
class Wait:
    until: float  # nothing can change before this (wall time), unless the record is stale


def admit(record: LogRecord, now: float, policy: Policy, holder: str, interactive: bool) -> Admitted | Wait:
    """A new permit for `holder` if the log allows one to start by now + LOOKAHEAD_SECONDS, else when to look
    again. The permit's `sent` is when it may start; its holder sends no earlier."""
    rate = record.rate(now, policy.budget)
    cap = policy.budget if rate >= policy.budget else max(1, math.floor(rate))
    # each condition as (when it surely clears, the soonest it might): the permit starts when all surely have
    blocked: list[tuple[float, float]] = []
    if not interactive:
        blocked += [(record.reads_waiting_until,) * 2, (record.next_send,) * 2]
        if now - record.reads_at < READS_RECENT_SECONDS:
            cap -= policy.reserve
            if cap <= 0:  # the reserve is all there is: nothing for background until reads are quiet
                return Wait(record.reads_at + READS_RECENT_SECONDS)
    live = record.live(now)
    if 0 < cap <= len(live):  # the permit needs len(live) - cap + 1 of the live ones gone
        surely = sorted(s.expires + CLOCK_SKEW_MARGIN for s in live)[len(live) - cap]
        blocked.append((surely, sorted(s.earliest_free(now) for s in live)[len(live) - cap]))
    start = max([now, *(sure for sure, _ in blocked)])
    if start > now + LOOKAHEAD_SECONDS:
        return Wait(max([now, *(soonest for _, soonest in blocked)]) - LOOKAHEAD_SECONDS)
    index = next(i for i, s in enumerate(record.slots) if not s.live(start))
    slot = Slot(holder, start, start + policy.longest_call + HOLD_AFTER_ANSWER, answered=False, interactive=interactive)
    slots = record.slots[:index] + (slot,) + record.slots[index + 1 :]
    changes = {"slots": slots, "next_send": max(record.next_send, start) + 1 / rate}
    if interactive:
        changes["reads_at"] = now
    return Admitted(replace(record, **changes), index)  # type: ignore[arg-type]


def demand(record: LogRecord, now: float) -> LogRecord | None:
    """A read that must wait holds background permits back, so it is next; None if already held back."""
    if record.reads_waiting_until >= now + READS_WAITING_SECONDS / 2:
        return None
    return replace(record, reads_at=now, reads_waiting_until=now + READS_WAITING_SECONDS)


def cut(record: LogRecord, now: float, budget: int, sent: float) -> LogRecord | None:
    """CAMS flow-controlled a call sent at `sent`: cut the deployment's rate. None when the call was sent before the
    last cut: it tells of the congestion that cut answered, not of the rate since (a fixed time window either cut
    twice for one congestion, or missed the first call sent at the new rate and left us in the neighbour's room)."""
    if record.rate_max and sent < record.throttled_at + CLOCK_SKEW_MARGIN:
        return None
    return replace(record, rate_max=record.rate(now, budget), throttled_at=now)
