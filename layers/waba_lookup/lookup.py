"""WabaLookup: the cache first, then CAMS through the account budget, retried while the deadline allows.

Deadlines are monotonic-clock times by which CAMS must have answered; an attempt starts only if a whole
CAMS call (connect and read timeouts) still fits before it.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any, Literal

from waba_lookup.budget import Budget
from waba_lookup.budget.log import CLOCK_SKEW_MARGIN, HOLD_AFTER_ANSWER
from waba_lookup.cache import CacheEntry, WabaCache
from waba_lookup.cams import CamsClient, client_from_settings
from waba_lookup.compose import budget_for, cache_for
from waba_lookup.customer import Customer
from waba_lookup.errors import (
    ConfigurationError,
    Denied,
    Throttled,
    UpstreamFailed,
    UpstreamRejected,
    WabaLookupError,
)
from waba_lookup.observability import count, count_error, logger
from waba_lookup.platforms.aws import FAIL_FAST_SECONDS
from waba_lookup.settings import Settings, get_settings

MAX_ATTEMPTS = 3
DEADLINE_MARGIN_SECONDS = 0.5  # kept back from the function's remaining time to answer and flush logs
# kept back from the last call for the worker's final wait, which an instance's own log needs (a permit counts a
# second after its answer, and the skew margin); with the shared log the wait returns at once
SETTLE_RESERVE_SECONDS = HOLD_AFTER_ANSWER + CLOCK_SKEW_MARGIN
SETTLE_MARGIN_SECONDS = 0.1  # a settling worker returns this long before its invocation ends
BACKOFF_BASE_SECONDS = 0.2
BACKOFF_CAP_SECONDS = 2.0

CacheStatus = Literal["HIT", "MISS", "STALE"]
RefreshOutcome = Literal["refreshed", "denied", "recent"]


@dataclass(frozen=True)
class Answer:
    """A WABA body as CAMS sent it, where it came from, and its age in whole seconds."""

    body: dict[str, Any]
    cache: CacheStatus
    age: int


class WabaLookup:
    """The package's one use case, for both triggers."""

    def __init__(
        self,
        settings: Settings,
        cams: Callable[[], CamsClient],
        budget: Callable[[], Budget],
        cache: WabaCache | None = None,
        wall: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self._cams = cams  # a factory: the SDK is imported only when CAMS is really called
        self._budget = budget  # a factory too: a cache hit needs no budget, nor its modules
        self.cache = cache
        self._wall, self._clock, self._sleep, self._jitter = wall, clock, sleep, jitter

    @cached_property
    def budget(self) -> Budget:
        """The instance's account budget, built when CAMS is first called."""
        return self._budget()

    @property
    def after_answer_seconds(self) -> float:
        """The longest an attempt's aftermath can take once CAMS answered: its answer written back to the budget,
        then the cache entry written. Builds the budget."""
        return self.budget.release_seconds + (self.cache.store.write_seconds if self.cache else 0.0)

    def read(
        self, customer: Customer, deadline: float, refresh: bool = False, wait_seconds: float | None = None
    ) -> Answer:
        """Serve a fresh entry, or fetch from CAMS; fall back to a stale entry when CAMS fails or throttles. `refresh`
        skips a fresh entry unless it is younger than REFRESH_MIN_INTERVAL_SECONDS. With `wait_seconds`, the wait
        for a permit is bounded from after the cache read, which a slow store may spend."""
        ttl, stale = self.settings.cache_ttl_seconds, self.settings.cache_stale_seconds
        cached = self.cache.get(customer) if self.cache else None
        if wait_seconds is not None:
            deadline = min(deadline, self._clock() + wait_seconds + self.settings.call_seconds)
        now = self._wall()
        # a forced read of an entry fetched moments ago is served from it, so no caller can spend CAMS in a loop
        forced = refresh and not (cached and cached.age(now) < self.settings.refresh_min_interval_seconds)
        if cached and not forced and cached.is_fresh(now, ttl):
            count("CacheHits")
            return Answer(cached.raise_if_denied(), "HIT", int(cached.age(now)))
        count("CacheMisses")
        try:
            entry = self._fetch_and_store(customer, deadline, interactive=True, previous=cached)
        except (Throttled, UpstreamFailed) as error:
            now = self._wall()
            servable = cached.servable_stale(now, ttl, stale) if cached else None
            if servable is not None:
                count("CacheStale")
                logger.warning("serving a stale entry", extra={"cams_code": error.code})
                return Answer(servable.raise_if_denied(), "STALE", int(servable.age(now)))
            raise
        return Answer(entry.raise_if_denied(), "MISS", 0)

    def refresh(self, customer: Customer, deadline: float) -> RefreshOutcome:
        """Refetch into the cache, unless the entry was fetched moments ago (a duplicate delivery)."""
        cached = self.cache.get(customer) if self.cache else None
        if cached and cached.age(self._wall()) < self.settings.refresh_min_interval_seconds:
            count("RefreshSkippedRecent")
            return "recent"
        if not self.cache:
            raise ConfigurationError("CACHE_BUCKET is not set: a refresh has nowhere to go")
        entry = self._fetch_and_store(customer, deadline, interactive=False, previous=cached)
        if not entry.stored:
            raise UpstreamFailed("the cache entry could not be written", "CacheUnavailable")
        return "refreshed" if entry.body is not None else "denied"

    def ready_to_refresh(self) -> None:
        """ConfigurationError, naming what is wrong, if no refresh can work here: no cache to write to, or CAMS
        credentials that cannot be read (an unreadable secret, half an AccessKey)."""
        if not self.cache:
            raise ConfigurationError("CACHE_BUCKET is not set: a refresh has nowhere to go")
        self._cams().ready()

    def _fetch_and_store(
        self, customer: Customer, deadline: float, interactive: bool, previous: CacheEntry | None
    ) -> CacheEntry:
        try:
            entry = CacheEntry(self._wall(), body=self.fetch(customer, deadline, interactive))
        except Denied as denied:
            entry = CacheEntry.denied(denied, self._wall(), previous)
        stored = self.cache.put(customer, entry) if self.cache else False
        return dataclasses.replace(entry, stored=stored)

    def fetch(self, customer: Customer, deadline: float, interactive: bool = True) -> dict[str, Any]:
        """Call CAMS, every attempt under a budget permit, retrying transient failures with full-jitter backoff."""
        send_by = deadline - self.settings.call_seconds
        failure: WabaLookupError | None = None
        for attempt in range(1, MAX_ATTEMPTS + 1):
            self._cams().prepare()  # everything the call needs, before its permit starts (again after a rejection)
            refused: WabaLookupError | None = None  # what CAMS answered, if not the body
            with ExitStack() as permit:
                asked = self._clock()
                try:
                    permit.enter_context(self.budget.permit(send_by, interactive))
                except WabaLookupError:
                    if failure is None:
                        raise
                    raise failure from None  # a retry that got no permit in time: the caller sees what CAMS said
                # one line per call, for the operators' dashboards (calls a second, permit waits)
                call = {"permit_wait_ms": round((self._clock() - asked) * 1000), "interactive": interactive}
                try:
                    body = self._cams().query(customer.cust_space_id, customer.isv_code)
                except WabaLookupError as error:
                    logger.info("CAMS call", extra=call | {"cams_code": error.code})
                    refused = error
                else:
                    logger.info("CAMS call", extra=call)
                    count("CamsCalls")
            # the answer is written back (the slot frees a second from now) before the level learns from it
            if refused is None:
                self.budget.succeeded()
                return body
            failure = self._retryable_or_raise(refused)
            backoff = self._jitter() * min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt)
            if attempt == MAX_ATTEMPTS or self._clock() + backoff > send_by:
                raise failure
            self._sleep(backoff)
        raise AssertionError("unreachable")

    def _retryable_or_raise(self, error: WabaLookupError) -> WabaLookupError:
        count("CamsCalls")
        count_error(error.code)
        if isinstance(error, Throttled):
            self.budget.throttled()
        elif not isinstance(error, UpstreamFailed) or isinstance(error, UpstreamRejected):
            raise error  # permanent, or a request CAMS refused as it is: no retry
        logger.info("CAMS attempt failed", extra={"cams_code": error.code, "request_id": error.request_id})
        return error


def deadline_within(
    remaining_ms: int, reserve_seconds: float = 0.0, clock: Callable[[], float] = time.monotonic
) -> float:
    """The monotonic time by which CAMS must have answered: inside the function's remaining time, less a margin,
    the cache write that follows the answer and `reserve_seconds` (kept for work after the last call)."""
    budget = remaining_ms / 1000 - DEADLINE_MARGIN_SECONDS - FAIL_FAST_SECONDS - reserve_seconds
    return clock() + budget


def settle_by(remaining_ms: int, clock: Callable[[], float] = time.monotonic) -> float:
    """Until when (monotonic) a worker invocation may wait for its budget to settle: its end, less the moment the
    handler needs to return its answer."""
    return clock() + remaining_ms / 1000 - SETTLE_MARGIN_SECONDS


def worker_deadline(
    lookup: WabaLookup, remaining_ms: int, final_seconds: float, clock: Callable[[], float] = time.monotonic
) -> float:
    """The monotonic time by which a worker's CAMS calls must have answered, so that what follows the last one
    fits in the invocation: its answer written back and its entry written (`after_answer_seconds`), the sends
    before returning (`final_seconds`, at their clients' timeouts), the final settle, and a margin. A record is
    started only if a permit and a whole call fit before it (refresh.refresh_message)."""
    after = lookup.after_answer_seconds + final_seconds + SETTLE_RESERVE_SECONDS + DEADLINE_MARGIN_SECONDS
    return clock() + remaining_ms / 1000 - after


@lru_cache(maxsize=1)
def get_lookup() -> WabaLookup:
    """The instance's WabaLookup, built from its settings on first use (one budget client per instance)."""
    settings = get_settings()
    cams = lru_cache(maxsize=1)(lambda: client_from_settings(settings))
    return WabaLookup(settings, cams, lambda: budget_for(settings), cache_for(settings))
