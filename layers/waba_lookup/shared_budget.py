"""SharedBudget: every CAMS attempt of the deployment takes a permit from one sliding log (see sliding_log.py).

A permit costs one conditional write to take and one to write the answer back; a lost race re-reads from the
failed write's answer. The instance keeps the record from its last request and reads again only when that copy
says to wait (another instance's answer may have freed a slot since).

The store failing or throttling puts the instance into static shares (pacing.Pacer) and never fails open:
- on entry, it first waits out every permit it might not see any more (the longest call and a second);
- the worker gets floor((budget - reserve) / CAMS_MAX_INSTANCES) calls a second, interactive reads
  floor(reserve / CAMS_MAX_INSTANCES) only when CAMS_MAX_INSTANCES caps the HTTP function, else BudgetUnavailable;
- before each static permit, at most every PROBE_SECONDS, it tries the store again; back, it records when it last
  called outside the log (`static_until`), and the log admits nothing until those calls can no longer count.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import ParamSpec, TypeVar

from waba_lookup.budget import BudgetStats
from waba_lookup.errors import BudgetUnavailable, Throttled
from waba_lookup.log_store import LogStore, StoreUnavailable
from waba_lookup.observability import count, logger
from waba_lookup.pacing import Pacer, Slot, Waiter
from waba_lookup.settings import Settings
from waba_lookup.sliding_log import (
    CLOCK_SKEW_MARGIN,
    HOLD_AFTER_ANSWER,
    Admitted,
    LogRecord,
    Policy,
    admit,
    after_static,
    cut,
    demand,
)

PROBE_SECONDS = 1.0  # in fallback, how often the store is tried again
RACES = 8  # lost races in a row before looking again a moment later
UNAVAILABLE_RETRY_AFTER = 5.0
P = ParamSpec("P")
T = TypeVar("T")


def _new_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class Permit:
    index: int = -1  # the log slot; -1 for a static permit
    holder: str = ""
    static: Slot | None = None
    interactive: bool = False


class SharedBudget:
    """The Budget port over a LogStore, with static shares as the fallback."""

    def __init__(
        self,
        store: LogStore,
        policy: Policy,
        fallback_shares: tuple[int, int],  # (background, interactive) calls per second per instance
        wall: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        new_id: Callable[[], str] = _new_id,
        waiter: Waiter | None = None,  # how a static share waits (tests pass a fake clock's)
    ) -> None:
        self.store, self.policy = store, policy
        self._wall, self._clock, self._sleep, self._new_id = wall, clock, sleep, new_id
        self._pacers = {
            interactive: Pacer(share, clock, waiter) if share else None
            for interactive, share in zip((False, True), fallback_shares, strict=True)
        }
        self._record: LogRecord | None = None
        self.in_fallback = False
        self._next_probe = 0.0
        self._sent_outside = False  # a static permit was taken since the last fallback began
        self.stats = BudgetStats()

    @classmethod
    def from_settings(cls, store: LogStore, settings: Settings) -> SharedBudget:
        budget, reserve, instances = (
            settings.cams_qps_budget,
            settings.cams_interactive_reserve,
            settings.cams_max_instances,
        )
        interactive_share = reserve // instances if settings.instances_capped else 0
        policy = Policy(budget, reserve, settings.call_seconds)
        return cls(store, policy, ((budget - reserve) // instances, interactive_share))

    @contextmanager
    def permit(self, send_by: float, interactive: bool) -> Iterator[None]:
        held = self.acquire(send_by, interactive)
        try:
            yield
        finally:
            self.release(held)

    def acquire(self, send_by: float, interactive: bool) -> Permit:
        """A permit for one attempt, waiting for it until `send_by` (monotonic) at most."""
        started = self._clock()
        while True:
            held = self._static(send_by, interactive) if self.in_fallback else self._shared(send_by, interactive)
            if held is not None:
                self.stats.record_wait(self._clock() - started, interactive)
                return held

    def release(self, held: Permit) -> None:
        """The attempt has answered: write the answer back, so the slot frees a second from now."""
        pacer = self._pacers[held.interactive]
        if held.static is not None and pacer is not None:
            pacer.release(held.static)
            return
        try:
            expires = self._wall() + HOLD_AFTER_ANSWER
            after = self._timed(self.store.answer, held.index, held.holder, expires, self._new_id())
        except StoreUnavailable as error:
            self._enter_fallback(error)  # the slot frees itself at send + the longest call + a second
            return
        if after is not None:
            self._record = after

    def try_acquire(self, interactive: bool) -> Permit | float:
        """A permit now, or the wall time worth looking again at. Raises StoreUnavailable."""
        holder = self._new_id()
        record, fresh = self._record, False
        if record is None:
            record, fresh = self._timed(self.store.load), True
        for _ in range(RACES):
            now = self._wall()
            decision = admit(record, now, self.policy, holder, interactive)
            if isinstance(decision, Admitted):
                written = replace(decision.record, version=self._new_id())
                current = self._timed(self.store.replace, written, record.version)
                if current is None:
                    self._record = written
                    return Permit(decision.index, holder, interactive=interactive)
                record, fresh = current, True  # lost a race: the failed write told us the record
                continue
            if not fresh:  # our copy may miss answers written back since: look before waiting
                record, fresh = self._timed(self.store.load), True
                continue
            waiting = demand(record, now) if interactive else None
            if waiting is not None:
                written = replace(waiting, version=self._new_id())
                current = self._timed(self.store.replace, written, record.version)
                record = written if current is None else current
                if current is not None:
                    continue
            self._record = record
            return decision.until
        self._record = record
        return self._wall() + 0.01

    def throttled(self) -> None:
        """Cut the deployment's rate in the record; every instance follows at its next permit."""
        for pacer in self._pacers.values():
            if pacer:
                pacer.throttled()
        try:
            record = self._record or self._timed(self.store.load)
            for _ in range(RACES):
                cutback = cut(record, self._wall(), self.policy.budget)
                if cutback is None:
                    return
                written = replace(cutback, version=self._new_id())
                current = self._timed(self.store.replace, written, record.version)
                if current is None:
                    self._record = written
                    return
                record = current
        except StoreUnavailable as error:
            self._enter_fallback(error)

    def succeeded(self) -> None:
        for pacer in self._pacers.values():
            if pacer:
                pacer.succeeded()

    def settle(self, wait_until: float) -> None:
        """Permits in the log need no waiting; static slots do (see Pacer.settle)."""
        for pacer in self._pacers.values():
            if pacer:
                pacer.settle(wait_until)

    def _shared(self, send_by: float, interactive: bool) -> Permit | None:
        try:
            outcome = self.try_acquire(interactive)
        except StoreUnavailable as error:
            self._enter_fallback(error)
            return None
        if isinstance(outcome, Permit):
            return outcome
        self._wait_until(outcome, send_by)
        return None

    def _static(self, send_by: float, interactive: bool) -> Permit | None:
        """A static share's slot, unless the store answers again right before the send."""
        pacer = self._pacers[interactive]
        if pacer is None:
            if self._probe_due() and self.rejoin():
                return None
            raise BudgetUnavailable(
                "the shared CAMS budget cannot be reached; try again shortly",
                retry_after=UNAVAILABLE_RETRY_AFTER,
            )
        slot = pacer.acquire(send_by)
        if self._probe_due() and self.rejoin():
            pacer.release(slot)  # not sent: the log takes over
            return None
        self._sent_outside = True
        return Permit(static=slot, interactive=interactive)

    def _probe_due(self) -> bool:
        return self._clock() >= self._next_probe

    def rejoin(self) -> bool:
        """In fallback, try the store again now; True when this instance is back on the log. If it called CAMS
        outside the log, the record says so first (`static_until`), and the log admits nothing until those calls
        can no longer count."""
        if not self.in_fallback:
            return True
        try:
            record = self._timed(self.store.load)
            for _ in range(RACES if self._sent_outside else 0):
                written = replace(after_static(record, self._wall()), version=self._new_id())
                if (current := self._timed(self.store.replace, written, record.version)) is None:
                    break
                record = current
            else:
                if self._sent_outside:
                    raise StoreUnavailable("lost every race to record the static calls")
        except StoreUnavailable:
            self._next_probe = self._clock() + PROBE_SECONDS
            return False
        logger.info("shared CAMS budget reachable again")
        self.in_fallback, self._sent_outside, self._record = False, False, None
        return True

    def _enter_fallback(self, error: StoreUnavailable) -> None:
        if not self.in_fallback:
            logger.warning("shared CAMS budget unreachable: static shares for now", extra={"reason": str(error)})
            count("BudgetStoreFallback")
            self.stats.fallbacks += 1
            # permits this instance can no longer see may be in flight: wait them out before any static call
            not_before = self._clock() + self.policy.longest_call + HOLD_AFTER_ANSWER + CLOCK_SKEW_MARGIN
            for pacer in self._pacers.values():
                if pacer:
                    pacer.not_before = max(pacer.not_before, not_before)
        self.in_fallback, self._record = True, None
        self._next_probe = self._clock() + PROBE_SECONDS

    def _wait_until(self, wall_time: float, send_by: float) -> None:
        wake = self._clock() + max(0.0, wall_time - self._wall())
        if wake > send_by:
            raise Throttled(
                "no CAMS permit is free within this request's wait bound",
                "Throttling.Pacing",
                retry_after=max(1.0, wake - self._clock()),
            )
        self._sleep(wake - self._clock())

    def _timed(self, request: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        started = time.perf_counter()
        try:
            return request(*args, **kwargs)
        finally:
            self.stats.store_requests += 1
            self.stats.store_seconds += time.perf_counter() - started
