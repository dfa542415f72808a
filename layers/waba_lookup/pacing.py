"""Static per-instance shares of the account's quota: the Budget port without a store (and its fallback).

Three rules, all enforced before a call is sent:
- a strict sliding window: at most `calls_per_second` slots are held at once, each from send until one second
  after the answer (CAMS counts a call when it arrives, somewhere in between), so no one-second window of
  arrivals ever holds more than the cap;
- sends are spaced at least 1/calls_per_second apart: the window alone would let an instance send its whole
  share at once, and bursts from several instances line up into windows another client on the account needs;
  spacing costs no throughput (the window is the binding limit);
- after CAMS flow-controls us (another client shares the account), a token bucket whose rate follows CUBIC,
  as botocore's adaptive retry mode does: cut by beta on each throttle, grow back along a cubic curve, never
  above the static share. botocore's constant C = 0.4 regains the old rate in about a second at our small
  rates, which re-congests at once; here C is set so that the old rate is regained in RECOVERY_SECONDS.
  While contended, the window also holds only the whole calls of that rate, and slots are held a random
  moment longer, so the instance neither bunches calls nor grabs room the instant it frees (see
  CubicRate.hold_jitter). A whole recovery without a throttle ends contention mode.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from waba_lookup.adaptive import Clock, CubicRate
from waba_lookup.budget import BudgetStats
from waba_lookup.errors import Throttled
from waba_lookup.sliding_log import HOLD_AFTER_ANSWER

Waiter = Callable[[threading.Condition, float], object]


class Slot:
    __slots__ = ("until",)

    def __init__(self) -> None:
        self.until = math.inf  # in flight: held until one second after the answer, which is not known yet


class Pacer:
    """Thread-safe gate in front of every CAMS attempt of one instance."""

    release_seconds = 0.0  # in memory

    def __init__(self, calls_per_second: int, clock: Clock = time.monotonic, waiter: Waiter | None = None) -> None:
        if calls_per_second < 1:
            raise ValueError("calls_per_second must be at least 1")
        self.calls_per_second = calls_per_second
        self._clock = clock
        self._cond = threading.Condition()
        self._wait: Waiter = waiter or (lambda cond, timeout: cond.wait(timeout))
        self._held: list[Slot] = []
        self._last_send = -math.inf
        self.not_before = -math.inf  # no send before this (clock time): see FallbackBudget
        self.adaptive = CubicRate(calls_per_second, clock)
        self.stats = BudgetStats()

    @contextmanager
    def permit(self, send_by: float, interactive: bool = False) -> Iterator[None]:
        """Hold a slot for one attempt; raise Throttled if none can be had before `send_by` (clock time)."""
        started = self._clock()
        held = self.acquire(send_by)
        self.stats.record_wait(self._clock() - started, interactive)
        try:
            yield
        finally:
            self.release(held)

    def release(self, held: Slot) -> None:
        """The attempt has answered: its slot is held one more second."""
        with self._cond:
            held.until = self._clock() + HOLD_AFTER_ANSWER + self.adaptive.hold_jitter()
            self._cond.notify_all()

    def settle(self, wait_until: float) -> None:
        """Wait (until `wait_until` at most) for every held slot to expire.

        The guarantee across instances rests on every slot being held by a running invocation: an instance that
        ends an invocation while still holding slots could be frozen and another started in its place within
        the second, and together they would exceed the budget. So an invocation drains its slots before it ends.
        """
        with self._cond:
            while True:
                now = self._clock()
                self._held = [s for s in self._held if s.until > now]
                if not self._held or now >= wait_until:
                    return
                expires = min(min(s.until, now + HOLD_AFTER_ANSWER) for s in self._held)
                self._wait(self._cond, min(expires, wait_until) - now)

    def throttled(self) -> None:
        """CAMS answered System.LimitControl: slow down."""
        with self._cond:
            self.adaptive.throttled()

    def succeeded(self) -> None:
        """CAMS answered: recover along the cubic curve."""
        with self._cond:
            self.adaptive.succeeded()

    def acquire(self, send_by: float) -> Slot:
        """A slot, once one is free; Throttled if that would be after `send_by`."""
        with self._cond:
            while True:
                now = self._clock()
                delay = self._delay(now)
                if now + delay > send_by:
                    raise Throttled(
                        "no CAMS call slot is free within this request's wait bound",
                        "Throttling.Pacing",
                        retry_after=max(1.0, delay),
                    )
                if delay <= 0:
                    held = Slot()
                    self._held.append(held)
                    self._last_send = now
                    self.adaptive.take()
                    return held
                self._wait(self._cond, delay)

    def _delay(self, now: float) -> float:
        self._held = [s for s in self._held if s.until > now]
        window = 0.0
        if len(self._held) >= self.adaptive.window_cap():
            # an in-flight call frees its slot a second after its answer at the earliest
            window = min(min(s.until, now + HOLD_AFTER_ANSWER) for s in self._held) - now
        spacing = self._last_send + 1 / self.calls_per_second - now
        return max(window, spacing, self.adaptive.delay(now), self.not_before - now)
