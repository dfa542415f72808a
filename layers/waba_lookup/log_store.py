"""Where the shared budget's record lives: the port (DynamoDB on AWS, Tablestore on FC) and an in-memory store."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Protocol

from waba_lookup.sliding_log import LogRecord


class StoreUnavailable(Exception):
    """The store could not be reached, failed, or throttled us; nothing is known about the record."""


class LogStore(Protocol):
    """One record, read whole and replaced whole, conditionally on its version; one slot updated alone."""

    def load(self) -> LogRecord:
        """The record as stored (strongly consistent), or an empty one with version ""."""
        ...

    def replace(self, record: LogRecord, expected_version: str) -> LogRecord | None:
        """Store `record` if the stored version is still `expected_version`: None when written, else the record
        as it is now (from the failed write itself, so a lost race costs no second request)."""
        ...

    def answer(self, index: int, holder: str, expires: float, version: str) -> LogRecord | None:
        """Mark slot `index` answered (counting until `expires`) and set `version`, if `holder` still holds it;
        the record after, or None when the slot has moved on."""
        ...


class MemoryLogStore:
    """The record in a dict under a lock, for tests; `down` makes every request fail like an outage."""

    def __init__(self) -> None:
        self.record = LogRecord()
        self.down = False
        self._lock = threading.Lock()

    def load(self) -> LogRecord:
        with self._lock:
            self._request()
            return self.record

    def replace(self, record: LogRecord, expected_version: str) -> LogRecord | None:
        with self._lock:
            self._request()
            if self.record.version != expected_version:
                return self.record
            self.record = record
            return None

    def answer(self, index: int, holder: str, expires: float, version: str) -> LogRecord | None:
        with self._lock:
            self._request()
            slot = self.record.slots[index]
            if slot.holder != holder:
                return None
            slots = list(self.record.slots)
            slots[index] = replace(slot, expires=expires, answered=True)
            self.record = replace(self.record, slots=tuple(slots), version=version)
            return self.record

    def _request(self) -> None:
        if self.down:
            raise StoreUnavailable("the in-memory store is down")
