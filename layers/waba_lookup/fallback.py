"""The Budget port as deployed with a store: the shared log, and static shares while the store is failing.

Never fail open:
- on entering fallback, an instance first waits out every permit it might not see any more (the longest call
  and a second), since its own or others' may still be in flight;
- the worker then gets floor((budget - reserve) / CAMS_MAX_INSTANCES) calls a second, interactive reads
  floor(reserve / CAMS_MAX_INSTANCES) only when CAMS_MAX_INSTANCES caps the HTTP function, else BudgetUnavailable
  (the read serves a stale entry or answers 503);
- right before each static send (at most every PROBE_SECONDS) it tries the store again; back, it records when it
  last called outside the log (`static_until`), and the log admits nothing until those calls no longer count.

The limit: an instance that never saw the outage can take permits from the log in the second after the store
comes back, beside the last static calls of an instance that has not looked again yet (at most PROBE_SECONDS).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from waba_lookup.errors import BudgetUnavailable
from waba_lookup.log_store import LogStore, StoreUnavailable
from waba_lookup.observability import count, logger
from waba_lookup.pacing import Pacer, Slot, Waiter
from waba_lookup.settings import Settings
from waba_lookup.shared_budget import LogPermit, SharedBudget
from waba_lookup.sliding_log import CLOCK_SKEW_MARGIN, HOLD_AFTER_ANSWER, Policy

PROBE_SECONDS = 1.0  # in fallback, how often the store is tried again
UNAVAILABLE_RETRY_AFTER = 5.0


@dataclass(frozen=True)
class StaticPermit:
    slot: Slot
    interactive: bool


Permit = LogPermit | StaticPermit


class FallbackBudget:
    """The shared log while its store answers; static shares, safely, while it does not."""

    def __init__(self, shared: SharedBudget, fallback_shares: tuple[int, int], waiter: Waiter | None = None) -> None:
        """`fallback_shares`: (background, interactive) calls per second per instance; `waiter` for a fake clock."""
        self.shared, self.stats, self._clock = shared, shared.stats, shared.clock
        self._pacers = {
            interactive: Pacer(share, shared.clock, waiter) if share else None
            for interactive, share in zip((False, True), fallback_shares, strict=True)
        }
        self._shares = [pacer for pacer in self._pacers.values() if pacer]
        self.in_fallback = False
        self._next_probe = 0.0
        self._sent_outside = False  # a static permit was taken since this fallback began
        self.release_seconds = shared.store.answer_seconds

    @classmethod
    def from_settings(cls, store: LogStore, settings: Settings) -> FallbackBudget:
        budget, reserve = settings.cams_qps_budget, settings.cams_interactive_reserve
        instances = settings.cams_max_instances
        interactive_share = reserve // instances if settings.instances_capped else 0
        shared = SharedBudget(store, Policy(budget, reserve, settings.call_seconds))
        return cls(shared, ((budget - reserve) // instances, interactive_share))

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
        held: Permit | None = None
        while held is None:
            if self.in_fallback:
                held = self._static(send_by, interactive)
                continue
            try:
                held = self.shared.acquire(send_by, interactive)
            except StoreUnavailable as error:
                self._enter_fallback(error)
        self.stats.record_wait(self._clock() - started, interactive)
        return held

    def release(self, held: Permit) -> None:
        if isinstance(held, StaticPermit):
            pacer = self._pacers[held.interactive]
            assert pacer is not None
            pacer.release(held.slot)
            return
        try:
            self.shared.release(held)
        except StoreUnavailable as error:
            self._enter_fallback(error)  # the slot frees itself at send + the longest call + a second

    def throttled(self) -> None:
        for pacer in self._shares:
            pacer.throttled()
        if not self.in_fallback:
            try:
                self.shared.throttled()
            except StoreUnavailable as error:
                self._enter_fallback(error)

    def succeeded(self) -> None:
        for pacer in self._shares:
            pacer.succeeded()

    def settle(self, wait_until: float) -> None:
        """Permits in the log need no waiting; static slots do (see Pacer.settle)."""
        for pacer in self._shares:
            pacer.settle(wait_until)

    def rejoin(self) -> bool:
        """In fallback, try the store again now; True when this instance is back on the log."""
        if not self.in_fallback:
            return True
        try:
            if self._sent_outside:
                self.shared.mark_static()
            else:
                self.shared.refresh()
        except StoreUnavailable:
            self._next_probe = self._clock() + PROBE_SECONDS
            return False
        logger.info("shared CAMS budget reachable again")
        self.in_fallback, self._sent_outside = False, False
        return True

    def _static(self, send_by: float, interactive: bool) -> StaticPermit | None:
        """A static share's slot, unless the store answers again right before the send."""
        pacer = self._pacers[interactive]
        if pacer is None:
            if self._probe_due() and self.rejoin():
                return None
            raise BudgetUnavailable(
                "the shared CAMS budget cannot be reached; try again shortly", retry_after=UNAVAILABLE_RETRY_AFTER
            )
        slot = pacer.acquire(send_by)
        if self._probe_due() and self.rejoin():
            pacer.release(slot)  # not sent: the log takes over
            return None
        self._sent_outside = True
        return StaticPermit(slot, interactive)

    def _probe_due(self) -> bool:
        return self._clock() >= self._next_probe

    def _enter_fallback(self, error: StoreUnavailable) -> None:
        if not self.in_fallback:
            logger.warning("shared CAMS budget unreachable: static shares for now", extra={"reason": str(error)})
            count("BudgetStoreFallback")
            self.stats.fallbacks += 1
            # permits this instance can no longer see may be in flight: wait them out before any static call
            not_before = self._clock() + self.shared.policy.longest_call + HOLD_AFTER_ANSWER + CLOCK_SKEW_MARGIN
            for pacer in self._shares:
                pacer.not_before = max(pacer.not_before, not_before)
        self.in_fallback = True
        self.shared.forget()
        self._next_probe = self._clock() + PROBE_SECONDS
