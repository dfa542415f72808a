"""Adaptive rate after CAMS flow control: botocore's CUBIC follower, tuned for shares of a few calls a second."""

from __future__ import annotations

import random
from collections.abc import Callable

Clock = Callable[[], float]


class CubicRate:
    """botocore's CUBIC rate follower (beta = 0.7), capped at the static share, recovering over RECOVERY_SECONDS."""

    BETA = 0.7
    RECOVERY_SECONDS = 20.0  # CUBIC's K: time to regain the rate at the last throttle (`make bench` measured)
    MIN_RATE = 0.2
    CONTENDED_JITTER = 0.5  # seconds, at most

    def __init__(self, cap: float, clock: Clock) -> None:
        self.cap = cap
        self._clock = clock
        self.enabled = False  # the bucket applies only once CAMS has throttled us
        self.rate = cap
        self._last_max = cap
        self._last_throttle = 0.0
        self._tokens = 0.0
        self._refilled_at = clock()

    def throttled(self) -> None:
        now = self._clock()
        self._refill(now)
        self._last_max = self.rate
        self._last_throttle = now
        self.rate = max(self.MIN_RATE, self.rate * self.BETA)
        if not self.enabled:
            self.enabled, self._tokens = True, 0.0

    def succeeded(self) -> None:
        if not self.enabled:
            return
        now = self._clock()
        self._refill(now)
        k = self.RECOVERY_SECONDS
        c = self._last_max * (1 - self.BETA) / k**3
        self.rate = max(self.MIN_RATE, min(self.cap, c * (now - self._last_throttle - k) ** 3 + self._last_max))
        if self.rate >= self.cap:
            self.enabled = False  # a whole recovery without a throttle: the neighbour is gone

    def hold_jitter(self) -> float:
        """Extra time a slot is held while contended: a paced instance otherwise sends the instant its own old
        call leaves CAMS's window, taking freed room before anyone else can, so a neighbour's calls are the ones
        that find the window full and we never hear of it."""
        return random.uniform(0, self.CONTENDED_JITTER) if self.enabled else 0.0

    def window_cap(self) -> int:
        """Slots the sliding window may hold: the static share, or after throttles the whole calls per second
        of the current rate (at least one). A fractional rate alone would still let two calls into a window
        now and then, and those coincidences are what collide with a neighbour."""
        return int(self.cap) if not self.enabled else max(1, min(int(self.cap), int(self.rate)))

    def delay(self, now: float) -> float:
        """Seconds until a token is available (0 when one is)."""
        if not self.enabled:
            return 0.0
        self._refill(now)
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate

    def take(self) -> None:
        if self.enabled:
            self._tokens -= 1

    def _refill(self, now: float) -> None:
        self._tokens = min(max(1.0, self.rate), self._tokens + (now - self._refilled_at) * self.rate)
        self._refilled_at = now
