"""SharedBudget: the Budget port. Every CAMS attempt takes a permit from one sliding log (see sliding_log.py) in a
LogStore: DynamoDB or Tablestore for the whole deployment, or, without a table, an in-memory one for the instance.

A permit costs one conditional write to take and one to write the answer back; a lost race re-reads from the
failed write's answer. The instance keeps the record from its last request and reads again only when that copy
says to wait (another instance's answer may have freed a slot since).

It fails closed: a store that cannot be reached or written costs one immediate retry, then the attempt is refused
with BudgetUnavailable and no CAMS call is made (a read serves a stale entry or answers 503; the worker returns its
items to the queue). Calls are never made outside the log, so the guarantee holds through any outage, partial or
whole: what an instance cannot see in the log, it does not send.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import ParamSpec, TypeVar

from waba_lookup.budget import BudgetStats
from waba_lookup.errors import BudgetUnavailable, Throttled
from waba_lookup.log_store import LogStore, StoreUnavailable
from waba_lookup.observability import count, logger
from waba_lookup.sliding_log import (
    CLOCK_SKEW_MARGIN,
    HOLD_AFTER_ANSWER,
    Admitted,
    LogRecord,
    Policy,
    admit,
    cut,
    demand,
)

RACES = 8  # lost races in a row before looking again a moment later
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
    _last_start: float = field(default=0.0, init=False)  # of the last permit given: what a throttle is about

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
        """A permit, waiting for it until `send_by` (monotonic) at most: Throttled if none comes by then, and
        BudgetUnavailable if the store fails again right after one immediate retry."""
        started = self.clock()
        try:
            held = self.acquire(send_by, interactive)
        except StoreUnavailable:
            self.forget()  # read the record afresh: a failed write leaves its outcome unknown
            try:
                held = self.acquire(send_by, interactive)
            except StoreUnavailable as error:
                self.forget()
                self._unreachable(error)
                raise BudgetUnavailable(
                    "the shared CAMS budget cannot be reached; try again shortly", retry_after=UNAVAILABLE_RETRY_AFTER
                ) from None
        self.stats.record_wait(self.clock() - started, interactive)
        return held

    def give_back(self, held: LogPermit) -> None:
        """The attempt has answered: write it back; if the store fails, the slot frees itself at send + the
        longest call + a second."""
        try:
            self.release(held)
        except StoreUnavailable as error:
            self._unreachable(error)

    def succeeded(self) -> None:
        """CAMS answered: nothing to do (the rate grows back with time, see sliding_log.LogRecord.rate)."""

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

    def acquire(self, send_by: float, interactive: bool) -> LogPermit:
        """A permit, waiting for it until `send_by` (monotonic) at most, or Throttled. Raises StoreUnavailable."""
        while not isinstance(outcome := self.try_acquire(interactive), LogPermit):
            delay = max(0.0, outcome - self.wall())  # once: the clocks move on while we look
            if self.clock() + delay > send_by:
                raise Throttled(
                    "no CAMS permit is free within this request's wait bound",
                    "Throttling.Pacing",
                    retry_after=max(1.0, delay),
                )
            self.sleep(delay)
        if (early := outcome.start - self.wall()) > 0:
            self.sleep(early)  # taken ahead, while the slot's last holder ran out
        self._last_start = outcome.start
        return outcome

    def release(self, held: LogPermit) -> None:
        """The attempt has answered: write the answer back, so the slot frees a second from now."""
        expires = self.wall() + HOLD_AFTER_ANSWER
        after = self._timed(self.store.answer, held.index, held.holder, expires, self.new_id())
        if after is not None:
            self._record = after

    def try_acquire(self, interactive: bool) -> LogPermit | float:
        """A permit now, or the wall time worth looking again at."""
        holder = self.new_id()
        record, fresh = self._record, False
        if record is None:
            record, fresh = self._timed(self.store.load), True
        for _ in range(RACES):
            now = self.wall()
            decision = admit(record, now, self.policy, holder, interactive)
            if isinstance(decision, Admitted):
                if (current := self._write(decision.record, record.version)) is None:
                    return LogPermit(decision.index, holder, decision.record.slots[decision.index].sent)
                record, fresh = current, True  # lost a race: the failed write told us the record
                continue
            if not fresh:  # our copy may miss answers written back since: look before waiting
                record, fresh = self._timed(self.store.load), True
                continue
            waiting = demand(record, now) if interactive else None
            if waiting is not None and (current := self._write(waiting, record.version)) is not None:
                record = current
                continue
            return decision.until
        return self.wall() + 0.01

    def throttled(self) -> None:
        """The last permit's call was flow-controlled: cut the deployment's rate in the record; every instance
        follows at its next permit. A store that fails now loses this cut (the next throttle makes it)."""
        try:
            record = self._record or self._timed(self.store.load)
            for _ in range(RACES):
                cutback = cut(record, self.wall(), self.policy.budget, self._last_start)
                if cutback is None or (current := self._write(cutback, record.version)) is None:
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

    def _write(self, record: LogRecord, expected_version: str) -> LogRecord | None:
        written = replace(record, version=self.new_id())
        current = self._timed(self.store.replace, written, expected_version)
        self._record = written if current is None else current
        return current

    def _timed(self, request: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        started = time.perf_counter()
        try:
            return request(*args, **kwargs)
        finally:
            self.stats.store_requests += 1
            self.stats.store_seconds += time.perf_counter() - started
