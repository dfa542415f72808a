"""Where the budget's record lives: the port (DynamoDB on AWS, Tablestore on FC, memory without a table), and the
record's columns as every store keeps them."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from waba_lookup.budget.log import CLOCK_SKEW_MARGIN, LogRecord, Slot, Take, Ticket

# Columns: `ns` and `ra` (background spacing, the last read); `lv`, `bs`, `ta`, `pf`, `st`, `nf` (the level after
# a throttle, and its probes); per slot i `h{i}` (holder), `s{i}` (sent), `e{i}` (expires), `a{i}` (answered), `c{i}`
# (interactive); per ticket `q{id}` = "i|b,joined,expires".
SCALARS = {
    "ns": "next_send",
    "ra": "reads_at",
    "lv": "level",
    "bs": "base",
    "ta": "changed_at",
    "pf": "probe_from",
    "st": "step",
    "nf": "failures",
}
CUT = ("lv", "bs", "ta", "pf", "st", "nf")  # the level after CAMS's last throttle, and its probes
Column = str | float | bool


@dataclass(frozen=True)
class Expect:
    """A condition on one column: it equals (`eq`) or is at most (`le`) `value`; or it is missing, if `if_missing`."""

    column: str
    op: Literal["eq", "le"]
    value: Column
    if_missing: bool = False


Put = Mapping[str, Column]  # the columns an update sets
Names = Sequence[str]  # the columns it removes
Expects = Sequence[Expect]  # its conditions


class StoreUnavailable(Exception):
    """The store could not be reached, failed, or throttled us; nothing is known about the record."""


class LogStore(Protocol):
    """One record, read whole and changed column by column, atomically, on conditions."""

    answer_seconds: float  # the longest writing an answer back can take (its request's timeout)

    def load(self) -> LogRecord:
        """The record as stored (strongly consistent), or an empty one."""
        ...

    def update(self, put: Put, delete: Names = (), expect: Expects = (), returning: bool = False) -> LogRecord | None:
        """Set `put` and remove `delete` if every expectation holds: None when written (`returning`: the record
        after, without tickets written later: a ticket's join counts those ahead of it from this), else the record
        as it is now. DynamoDB returns either with the write; Tablestore costs a read more."""
        ...


def number(value: float) -> float:
    return round(float(value), 6)


def slot_columns(index: int, slot: Slot) -> dict[str, Column]:
    return {
        f"h{index}": slot.holder,
        f"s{index}": number(slot.sent),
        f"e{index}": number(slot.expires),
        f"a{index}": slot.answered,
        f"c{index}": slot.interactive,
    }


TICKET_PREFIX = "q"


def ticket_name(ticket_id: str) -> str:
    return f"{TICKET_PREFIX}{ticket_id}"


def ticket_column(ticket: Ticket) -> tuple[str, str]:
    kind = "i" if ticket.interactive else "b"
    return ticket_name(ticket.id), f"{kind},{number(ticket.joined)!r},{number(ticket.expires)!r}"


def take_write(take: Take) -> tuple[dict[str, Column], list[str], list[Expect]]:
    """A Take as an update: its slot's columns, the line it leaves, on the slot being free by its start and the
    level unchanged since the record it was planned from."""
    put = slot_columns(take.index, take.slot)
    expect = [Expect(f"e{take.index}", "le", number(take.slot.sent - CLOCK_SKEW_MARGIN), if_missing=True)]
    expect.append(Expect("ta", "eq", number(take.changed_at), if_missing=True))
    if take.next_send is not None:  # spacing, not the guarantee: set without a condition, so waiters never race on it
        put["ns"] = number(take.next_send)
    if take.reads_at is not None:
        put["ra"] = number(take.reads_at)
    return put, [ticket_name(ticket) for ticket in take.leaves], expect


def answer_write(index: int, holder: str, expires: float) -> tuple[dict[str, Column], list[str], list[Expect]]:
    """An answer written back: slot `index` answered, counting until `expires`, if `holder` still holds it."""
    return {f"e{index}": number(expires), f"a{index}": True}, [], [Expect(f"h{index}", "eq", holder)]


def level_write(new: LogRecord, old: LogRecord) -> tuple[dict[str, Column], list[str], list[Expect]]:
    """A new level (after a throttle, or a probe that passed), on condition that no other came since `old`."""
    put: dict[str, Column] = {name: number(getattr(new, SCALARS[name])) for name in CUT}
    since = [Expect("ta", "eq", number(old.changed_at), if_missing=True)]
    return put, [], [*since, Expect("pf", "eq", number(old.probe_from), if_missing=True)]


def from_columns(columns: Mapping[str, Column] | None) -> LogRecord:
    """The record in these columns; an empty record for none. Columns it does not know are ignored."""
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
    line = []
    for name, value in columns.items():
        if name.startswith(TICKET_PREFIX) and isinstance(value, str):
            kind, joined, expires = value.split(",")
            line.append(Ticket(name.removeprefix(TICKET_PREFIX), kind == "i", float(joined), float(expires)))
    times = {field: float(columns[name]) for name, field in SCALARS.items() if name in columns}
    return LogRecord(slots=tuple(slots), line=tuple(line), **times)


def holds(expect: Expect, columns: Mapping[str, Column]) -> bool:
    """Whether one expectation holds of these columns (the in-memory store's, and the tests' reference)."""
    if expect.column not in columns:
        return expect.if_missing
    value = columns[expect.column]
    if expect.op == "eq":
        return value == expect.value
    return isinstance(value, float) and isinstance(expect.value, float) and value <= expect.value


class MemoryLogStore:
    """The record's columns in memory under a lock: one instance's own log without a table, and the tests' shared
    one; `down` makes every request fail like an outage."""

    answer_seconds = 0.0

    def __init__(self) -> None:
        self.columns: dict[str, Column] = {}
        self.down = False
        self._lock = threading.Lock()

    def load(self) -> LogRecord:
        with self._lock:
            self._request()
            return from_columns(self.columns)

    def update(self, put: Put, delete: Names = (), expect: Expects = (), returning: bool = False) -> LogRecord | None:
        with self._lock:
            self._request()
            if not all(holds(e, self.columns) for e in expect):
                return from_columns(self.columns)
            self.columns.update(put)
            for name in delete:
                self.columns.pop(name, None)
            return from_columns(self.columns) if returning else None

    def _request(self) -> None:
        if self.down:
            raise StoreUnavailable("the in-memory store is down")
