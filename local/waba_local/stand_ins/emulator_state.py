"""Thread-safe bookkeeping of the CAMS emulator: the call log, the flow-control window, used nonces, behaviours.

Windows are half-open: two calls share a one-second window when they arrived less than one second apart.
"""

from __future__ import annotations

import threading
from bisect import insort
from dataclasses import dataclass

from waba_local.stand_ins.emulator_protocol import DOCUMENTED_ERRORS, ERRORS

ANY_CUSTOMER = "*"  # set_behaviour key of the global default, used when a customer has no behaviour of its own
_MAX_SLOW_SECONDS = 300.0


@dataclass(frozen=True)
class Call:
    """One API call as CAMS saw it. status 0 / code "Dropped": the connection was closed without an answer."""

    arrived_at: float
    answered_at: float
    access_key_id: str | None
    cust_space_id: str | None
    status: int
    code: str

    @property
    def accepted(self) -> bool:
        return self.code == "OK"


def busiest_window(arrivals: list[float], window: float) -> int:
    """The most arrivals that fall in any half-open window [s, s + window)."""
    ordered = sorted(arrivals)
    most, end = 0, 0
    for start, arrived in enumerate(ordered):
        while end < len(ordered) and ordered[end] < arrived + window:
            end += 1
        most = max(most, end - start)
    return most


class CallLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[Call] = []

    def record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    def snapshot(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()


class FlowWindow:
    """Admits at most `limit` calls in any sliding window, judged on arrival times."""

    def __init__(self, limit: int, window: float = 1.0) -> None:
        self._limit, self._window = limit, window
        self._lock = threading.Lock()
        self._arrivals: list[float] = []

    def admit(self, arrived_at: float) -> bool:
        with self._lock:
            # Threads may reach this point slightly out of arrival order, so check every window that would hold
            # the new arrival, not only the one ending at it: the limit then holds strictly.
            self._arrivals = [t for t in self._arrivals if t > arrived_at - 2 * self._window]
            if self._busiest_with(arrived_at) >= self._limit:
                return False
            insort(self._arrivals, arrived_at)
            return True

    def clear(self) -> None:
        with self._lock:
            self._arrivals.clear()

    def _busiest_with(self, arrived_at: float) -> int:
        # The busiest window holding `arrived_at` starts at it or at an earlier arrival less than a window before.
        starts = [t for t in self._arrivals if arrived_at - self._window < t <= arrived_at] + [arrived_at]
        return max(sum(1 for t in self._arrivals if s <= t < s + self._window) for s in starts)


class NonceCache:
    """Signature nonces seen within the replay window."""

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._lock = threading.Lock()
        self._seen: dict[str, float] = {}

    def claim(self, nonce: str, now: float) -> bool:
        with self._lock:
            # Insertion order is arrival order, so expired nonces sit at the front.
            while self._seen and next(iter(self._seen.values())) <= now - self._ttl:
                del self._seen[next(iter(self._seen))]
            if nonce in self._seen:
                return False
            self._seen[nonce] = now
            return True

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()


@dataclass(frozen=True)
class Behaviour:
    """How the emulator answers a call that passed authentication and flow control."""

    kind: str  # ok | error | 5xx | 500 | slow | garbage | drop
    code: str = ""
    seconds: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Behaviour:
        kind, _, arg = text.partition(":")
        if text in ("ok", "5xx", "500", "garbage", "drop"):
            return cls(text)
        if kind == "error" and arg in ERRORS:  # the documented four, or any other code CAMS's gateway answers
            return cls(kind, code=arg)
        if kind == "slow":
            try:
                seconds = float(arg)
            except ValueError:
                seconds = -1.0
            if 0 <= seconds <= _MAX_SLOW_SECONDS:
                return cls(kind, seconds=seconds)
        raise ValueError(
            f"unknown behaviour {text!r}: expected ok, error:<{'|'.join(DOCUMENTED_ERRORS)}|another CAMS code>, 5xx, 500, "
            f"slow:<seconds up to {_MAX_SLOW_SECONDS:g}>, garbage or drop"
        )


OK = Behaviour("ok")


class _Slot:
    """One key's behaviours: a lasting one and, on top, one limited to the next `remaining` calls."""

    def __init__(self) -> None:
        self.lasting: Behaviour | None = None
        self.temporary: Behaviour | None = None
        self.remaining = 0

    def take(self) -> Behaviour | None:
        if self.temporary is not None:
            behaviour, self.remaining = self.temporary, self.remaining - 1
            if self.remaining == 0:
                self.temporary = None
            return behaviour
        return self.lasting


class Behaviours:
    """Behaviours per CustSpaceId (None: the account's own WABA) and the global default under ANY_CUSTOMER."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str | None, _Slot] = {}

    def set(self, cust_space_id: str | None, behaviour: str, times: int | None = None) -> None:
        parsed = Behaviour.parse(behaviour)
        if times is not None and (not isinstance(times, int) or isinstance(times, bool) or times < 1):
            raise ValueError(f"times must be a positive integer or None, not {times!r}")
        with self._lock:
            slot = self._slots.setdefault(cust_space_id, _Slot())
            if times is None:
                slot.lasting, slot.temporary, slot.remaining = parsed, None, 0
            else:
                slot.temporary, slot.remaining = parsed, times

    def take(self, cust_space_id: str | None) -> Behaviour:
        """The behaviour for this call, using up one of a times-limited behaviour."""
        with self._lock:
            for key in (cust_space_id, ANY_CUSTOMER):
                slot = self._slots.get(key)
                behaviour = slot.take() if slot else None
                if behaviour is not None:
                    return behaviour
            return OK

    def clear(self) -> None:
        with self._lock:
            self._slots.clear()
