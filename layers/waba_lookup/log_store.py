"""Where the shared budget's record lives: the port (DynamoDB on AWS, Tablestore on FC), the record's columns as
both stores keep them, and an in-memory store."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Protocol

from waba_lookup.sliding_log import LogRecord, Slot

# one column per record field: `v` (version), `ns`, `rm`, `ta`, `ra`, `rw` (times and rate); per slot i
# `h{i}` (holder), `s{i}` (sent), `e{i}` (expires), `a{i}` (answered), `c{i}` (interactive)
RECORD_FIELDS = {
    "ns": "next_send",
    "rm": "rate_max",
    "ta": "throttled_at",
    "ra": "reads_at",
    "rw": "reads_waiting_until",
}
Column = str | float | bool


def to_columns(record: LogRecord) -> dict[str, Column]:
    """The record as columns: a slot nobody holds has none (a whole-record write removes them)."""
    columns: dict[str, Column] = {"v": record.version}
    columns |= {name: round(float(getattr(record, field)), 6) for name, field in RECORD_FIELDS.items()}
    for i, slot in enumerate(record.slots):
        if slot.holder:
            columns |= {
                f"h{i}": slot.holder,
                f"s{i}": round(slot.sent, 6),
                f"e{i}": round(slot.expires, 6),
                f"a{i}": slot.answered,
                f"c{i}": slot.interactive,
            }
    return columns


def from_columns(columns: dict[str, Column] | None) -> LogRecord:
    """The record in these columns; an empty record (version "") for none."""
    if not columns:
        return LogRecord()
    default = LogRecord()
    slots = [
        Slot(
            str(columns[f"h{i}"]),
            float(columns[f"s{i}"]),
            float(columns[f"e{i}"]),
            bool(columns[f"a{i}"]),
            bool(columns[f"c{i}"]),
        )
        if f"h{i}" in columns
        else empty
        for i, empty in enumerate(default.slots)
    ]
    times = {field: float(columns[name]) for name, field in RECORD_FIELDS.items() if name in columns}
    return LogRecord(version=str(columns["v"]), slots=tuple(slots), **times)


class StoreUnavailable(Exception):
    """The store could not be reached, failed, or throttled us; nothing is known about the record."""


class LogStore(Protocol):
    """One record, read whole and replaced whole, conditionally on its version; one slot updated alone."""

    answer_seconds: float  # the longest writing an answer back can take (its requests' timeouts)

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
    """The record in memory under a lock: one instance's own log without a table, and the tests' shared one;
    `down` makes every request fail like an outage."""

    answer_seconds = 0.0

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
