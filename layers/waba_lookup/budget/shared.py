"""SharedBudget: the Budget port over one record in a LogStore (the rules are in the package docstring)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import ParamSpec, TypeVar

from waba_lookup.budget.log import (
    CLOCK_SKEW_MARGIN,
    HOLD_AFTER_ANSWER,
    LOOKAHEAD_SECONDS,
    TAKE_LONGEST_SECONDS,
    TICKET_GRACE_SECONDS,
    LogRecord,
    Policy,
    Take,
    Ticket,
    Wait,
    admit,
    cut,
    in_window,
    passed,
    take,
    top_of_probe,
    usable,
)
from waba_lookup.budget.stats import BudgetStats
from waba_lookup.budget.store import (
    LogStore,
    StoreUnavailable,
    answer_write,
    level_write,
    number,
    take_write,
    ticket_column,
    ticket_name,
)
from waba_lookup.errors import BudgetUnavailable, Throttled
from waba_lookup.observability import count, logger

ROUNDS = 32  # looks at the record before giving up on one permit (each a wait or a lost race)
FIRST_TICKET_SECONDS = 20.0  # a place in line lapses this soon (or at its deadline) unless renewed
SHORT_WAIT_SECONDS = 0.25  # a wait this short, with no one in line, is slept without joining
RACES = 8  # lost races in a row before a cut gives up
UNAVAILABLE_RETRY_AFTER = 5.0  # what a refused read tells its caller to wait
P = ParamSpec("P")
T = TypeVar("T")


def _new_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class LogPermit:
    index: int  # the slot
    holder: str
    start: float  # wall time before which it must not be used


@dataclass
class SharedBudget:
    """Permits from one record in a LogStore, for every instance of the deployment (or, `local`, for this one)."""

    store: LogStore
    policy: Policy
    local: bool = False  # the store is this instance's own: an invocation ends holding no live permit (settle)
    stats: BudgetStats = field(default_factory=BudgetStats)
    wall: Callable[[], float] = time.time
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    new_id: Callable[[], str] = _new_id
    _record: LogRecord | None = field(default=None, init=False)
    _last: LogPermit | None = field(default=None, init=False)  # the last permit given: what CAMS's answer is about

    @property
    def release_seconds(self) -> float:
        return self.store.answer_seconds

    @contextmanager
    def permit(self, send_by: float, interactive: bool) -> Iterator[None]:
        """Hold a permit for one attempt, from before its send until its answer is written back."""
        held = self.take(send_by, interactive)
        try:
            yield
        finally:
            self.give_back(held)

    def take(self, send_by: float, interactive: bool) -> LogPermit:
        """A permit, waiting for it until `send_by` (monotonic) at most: Throttled if its turn cannot come by then,
        and BudgetUnavailable if the store fails again right after one immediate retry."""
        started, holder = self.clock(), self.new_id()  # the retry keeps the holder: a place in line it may hold
        try:
            held = self.acquire(send_by, interactive, holder)
        except StoreUnavailable:
            self.forget()
            try:
                held = self.acquire(send_by, interactive, holder)
            except StoreUnavailable as error:
                self.forget()
                self._unreachable(error)
                raise BudgetUnavailable(
                    "the shared CAMS budget cannot be reached; try again shortly", retry_after=UNAVAILABLE_RETRY_AFTER
                ) from None
        self.stats.record_wait(self.clock() - started, interactive)
        return held

    def give_back(self, held: LogPermit) -> None:
        """The attempt has answered: write it back, so the slot frees a second from now; if the store fails, the
        slot frees itself at its start + the take's longest + the longest call + a second."""
        expires = number(self.wall() + HOLD_AFTER_ANSWER)
        try:
            self._timed("answer", self.store.update, *answer_write(held.index, held.holder, expires))
        except StoreUnavailable as error:
            self._unreachable(error)
            self.forget()
            return
        if self._record is not None:  # our copy learns our own answer (the next permit's write checks the rest)
            self._record = self._record.answered(held.index, held.holder, expires)

    def _give_up(self, held: LogPermit) -> None:
        """Free a permit whose call was never sent, at once (best effort: unanswered, it frees itself in time)."""
        try:
            self._timed("answer", self.store.update, *answer_write(held.index, held.holder, number(self.wall())))
        except StoreUnavailable:
            pass

    def succeeded(self) -> None:
        """CAMS answered: if the last permit was the top slot of an open probe, the probe may have passed."""
        last, self._last = self._last, None
        if (
            last is None
            or self._record is None
            or not top_of_probe(self._record, self.policy.budget, last.index, last.start)
        ):
            return
        self._change(lambda r, ours: passed(r, self.wall(), self.policy.budget, last.index, last.start, ours), last)

    def settle(self, wait_until: float) -> None:
        """Before an invocation ends: with an instance's own log, wait until none of its permits counts any more,
        since a frozen instance's successor would start from an empty log (until `wait_until` at most). A shared
        log needs no wait: every instance sees every permit in it."""
        while self.local:
            live = self.store.load().live(self.wall())
            remaining = wait_until - self.clock()
            if not live or remaining <= 0:
                return
            self.sleep(min(remaining, max(s.expires for s in live) + CLOCK_SKEW_MARGIN - self.wall()))

    def acquire(self, send_by: float, interactive: bool, holder: str | None = None) -> LogPermit:
        """A permit by `send_by` (monotonic) for `holder` (a new id if None), waiting in line for it, or Throttled.
        Raises StoreUnavailable."""
        holder = holder or self.new_id()
        ticket: Ticket | None = None
        planned: Wait | None = None  # after sleeping until a planned turn: its slot, tried at once without a look
        record, fresh = self._record, False
        for _ in range(ROUNDS):
            now = self.wall()
            # what our copy says, before we hold a place in line (with one, admit below asks it with the ticket)
            first = admit(record, now, self.policy, holder, interactive) if record and ticket is None else None
            if planned is None and record and isinstance(first, Wait) and self._short(first, record, now, send_by):
                self.sleep(max(0.0, first.until - self.wall()))  # no one in line: a moment's wait needs no ticket
                planned, fresh = first, False
                continue
            if record is None or isinstance(first, Wait):
                # no copy, or one that says wait: join the line; the write returns the record, line included, so
                # it costs no more than reading it would (and a permit free after all is taken with the ticket)
                ticket = Ticket(holder, interactive, now, now + min(FIRST_TICKET_SECONDS, send_by - self.clock()))
                record = self._timed("join", self.store.update, dict([ticket_column(ticket)]), returning=True)
                assert record is not None
                ticket = replace(ticket, seen=frozenset(t.id for t in record.line if t.id != holder))
                fresh, first = True, None
                now = self.wall()  # a join under a crowd can take most of a second: plan and date from after it
            if planned is not None and (
                record.probing(now, self.policy.budget)  # a probe's slots go to the first in line, not as planned
                or planned.index >= usable(record, now, self.policy, interactive)  # a throttle cut it, or reads came
            ):
                planned = None
            if planned is not None:
                start = max(now, planned.start)
                decision: Take | Wait = take(
                    record, now, self.policy, holder, interactive, planned.index, start, ticket
                )
                planned = None
            else:
                decision = first or admit(record, now, self.policy, holder, interactive, ticket)
            if isinstance(decision, Take):
                if (current := self._timed("take", self.store.update, *take_write(decision))) is None:
                    if self.wall() > decision.slot.sent + TAKE_LONGEST_SECONDS:  # too late for the permit's bound
                        self._give_up(LogPermit(decision.index, holder, decision.slot.sent))
                        raise StoreUnavailable("the budget's store took too long to give a permit")
                    self._record = decision.applied(record)
                    return self._use(LogPermit(decision.index, holder, decision.slot.sent))
                record, fresh = current, True  # lost: the failed write (or a read after it) told us the record
                continue
            if not fresh:  # our copy may miss answers written back since: look before waiting
                record, fresh = self._timed("look", self.store.load), True
                continue
            if ticket is None:
                continue  # join first, then plan from the line as it is
            ticket = self._wait_for(decision, record, now, send_by, ticket)
            record, fresh = record.with_ticket(ticket), False
            planned = decision if decision.index >= 0 else None  # no slot planned (reads hold the reserve): ask again
        if ticket is not None:
            self._leave(ticket)
        raise Throttled("no CAMS permit is free within this request's wait bound", "Throttling.Pacing", retry_after=1.0)

    def _short(self, wait: Wait, record: LogRecord, now: float, send_by: float) -> bool:
        """A wait so short, with no one in line, that joining would cost more than it orders (background spacing,
        a slot about to free)."""
        soon = wait.until - now <= SHORT_WAIT_SECONDS and self.clock() + (wait.until - now) <= send_by
        return soon and wait.index >= 0 and not record.waiting(now)

    def _wait_for(self, turn: Wait, record: LogRecord, now: float, send_by: float, ticket: Ticket) -> Ticket:
        """Hold the place in line and sleep until the planned turn; Throttled at once if it cannot come by
        `send_by`."""
        ahead = turn.until - now
        if self.clock() + ahead > send_by:
            self._leave(ticket)
            raise Throttled(
                "no CAMS permit can be had within this request's wait bound",
                "Throttling.Pacing",
                retry_after=max(1.0, ahead),
            )
        if ticket.expires < turn.until + LOOKAHEAD_SECONDS:  # renew it, or it lapses before its turn
            deadline = now + (send_by - self.clock())
            grace = max(TICKET_GRACE_SECONDS, (turn.until - now) / 2)  # a far turn moves: renew it seldom
            expires = min(deadline, turn.until + LOOKAHEAD_SECONDS + grace)
            if expires > ticket.expires:  # else it lasts until the deadline already
                ticket = replace(ticket, expires=expires)
                self._timed("renew", self.store.update, dict([ticket_column(ticket)]))
        self._record = record.with_ticket(ticket)
        self.sleep(max(0.0, turn.until - self.wall()))
        return ticket

    def _use(self, held: LogPermit) -> LogPermit:
        if (early := held.start - self.wall()) > 0:
            self.sleep(early)  # taken ahead, while the slot's last holder ran out
        self._last = held
        return held

    def _leave(self, ticket: Ticket) -> None:
        """Give a place in line up, so those behind need not wait for it to lapse (best effort: it lapses anyway)."""
        try:
            self._timed("leave", self.store.update, {}, (ticket_name(ticket.id),))
        except StoreUnavailable:
            pass

    def throttled(self) -> None:
        """The last permit's call was flow-controlled: a new level for the deployment in the record; every instance
        follows at its next permit."""
        last, self._last = self._last, None
        if last is not None:
            self._change(lambda r, ours: cut(r, self.wall(), self.policy.budget, last.start, ours), last)

    def _change(self, change: Callable[[LogRecord, int], LogRecord | None], last: LogPermit) -> None:
        """Write the level `change` makes of the record and of our calls in CAMS's window with the `last` one, on
        condition that no other change came first (else again, on the record as it is then). Best effort: a store
        that fails loses it, and the next answer makes it again."""
        try:
            # the slots taken since our copy: who else was in CAMS's window
            record = self._timed("level", self.store.load)
            ours = in_window([record, *([self._record] if self._record else [])], last.start)
            for _ in range(RACES):
                new = change(record, ours)
                if new is None:
                    return
                if (current := self._timed("level", self.store.update, *level_write(new, record))) is None:
                    self._record = new
                    return
                record = current
        except StoreUnavailable as error:
            self._unreachable(error)

    def forget(self) -> None:
        """Drop the copy of the record: the next permit reads it again."""
        self._record = None

    def _unreachable(self, error: StoreUnavailable) -> None:
        logger.warning("shared CAMS budget unreachable: no CAMS call", extra={"reason": str(error)})
        count("BudgetStoreUnavailable")
        self.stats.store_failures += 1

    def _timed(self, kind: str, request: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        started = time.perf_counter()
        try:
            return request(*args, **kwargs)
        finally:
            self.stats.store_requests += 1
            self.stats.by_kind[kind] = self.stats.by_kind.get(kind, 0) + 1
            self.stats.store_seconds += time.perf_counter() - started
