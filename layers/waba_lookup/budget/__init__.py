"""The account budget: every CAMS attempt holds a permit from one record, shared by the whole deployment.

The record (log.py) lives in a LogStore (store.py): DynamoDB on AWS (dynamodb.py), Tablestore on FC
(tablestore.py), both when CAMS_BUDGET_TABLE is set; without a table, in memory, as the instance's own record with
floor(CAMS_QPS_BUDGET / CAMS_MAX_INSTANCES) as its budget. SharedBudget (shared.py) is the Budget port over it.

Slots. The record has CAMS_MAX_QPS slots; a permit occupies one from its start until HOLD_AFTER_ANSWER (1 s) after
its call's answer is written back, or, never written back, until start + TAKE_LONGEST_SECONDS (3 s; its call is
sent once its take comes back, and a take that comes back later is given up unused) + the longest call + 1 s. CAMS
counts a call when it arrives, somewhere in between, so if at most `budget` permits are live at once, no sliding
second of arrivals holds more than `budget` calls. Permits use only the first `budget` slots, and a permit is
written into its slot on the condition, checked by the store, that the slot's last permit stops counting by the new
one's start (+ CLOCK_SKEW_MARGIN, since every instance reads its own wall clock): two permits never share a slot,
whoever races, whatever an instance's copy of the record says.

The line. An instance that cannot have a permit now joins the line: a ticket (reads or background, when it
joined, when it lapses) written beside the slots without any condition, so joining never races. Reads go before
background work, and each class is first come, first served in the order the tickets reached the store: a
waiter counts ahead of it the tickets its join found in line (the write returns the record), never one whose
clock said it joined earlier but that arrived later. A permit is taken only by the first waiters, one per free
slot. A waiter plans its turn from its place (each one ahead takes the slot likely to free first and
holds it a typical call and a second), sleeps until then, and tries its planned slot at once. Its ticket lapses
TICKET_GRACE_SECONDS after that turn, or at its deadline, so a waiter that gave up, timed out or died never holds
the line; one that must wait longer renews it. A read whose turn cannot come within HTTP_PERMIT_WAIT_SECONDS is
refused at once (Throttled, Retry-After from its turn). A permit costs, with no one waiting, one conditional
write to take and one to write its answer back; in line, one write more to join and a read when a plan was wrong.

Classes. Background permits leave CAMS_INTERACTIVE_RESERVE slots free while reads are recent (READS_RECENT_SECONDS)
and are spaced 1/rate apart (`next_send`).

Level. CAMS refuses whichever call meets a full window, and ours arrive the moment our oldest leaves it: beside a
neighbour that calls at its own pace, a call too many of ours mostly costs the neighbour a call, unheard by us. So
the deployment's level (the slots it may use) comes down on what a throttle shows, goes up only on evidence, and
goes back at once when that evidence proves false. On System.LimitControl (once per change: a call started within
a second of one met a window from before it), with `ours` our calls in CAMS's window at the refused one:
  - after a probe passed, before the next throttle: back to the level before the first such pass (that room was
    a neighbour's refused call);
  - a probe's call, or one that met a probe's (ours above the level): the level stands if the probe's first call
    more fitted (ours at least the level + 2), else it is at the edge and leaves one to spare;
  - any other: halved.
Probes open every PROBE_FIRST (6 s) after a throttle, doubled by each throttle in a row up to PROBE_LONGEST (12 s):
for PROBE_OPEN (1 s) at most, or until its top slot is taken, two permits more may start. Its top slot's call
accepted, with the level it would rise to in CAMS's window, passes it: the level rises by the step, the next probe
opens PROBE_NEXT (1 s) later and then every PROBE_AGAIN (2 s) while passes wait (a throttle undoes them at once),
and once passes have raised it by CLIMB_BEFORE_DOUBLING (3) the step doubles (1, 1, 1, 2, 4): a false pass comes
just above the room, where a step too far costs a neighbour calls, and a deployment whose neighbour left is back
at the budget in four or five probes.

Failure. The store failing costs one immediate retry; then the attempt is refused (BudgetUnavailable) and no call
is made: a read serves a stale entry or answers 503, the worker returns its items to the queue. Calls are never
made outside the record, so the guarantee holds through any outage, partial or whole.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from waba_lookup.budget.stats import BudgetStats

__all__ = ["Budget", "BudgetStats"]


class Budget(Protocol):
    """Admission of CAMS attempts under the account's calls-per-second quota."""

    stats: BudgetStats

    @property
    def release_seconds(self) -> float:
        """The longest writing an attempt's answer back can take, once CAMS answered."""
        ...

    def permit(self, send_by: float, interactive: bool) -> AbstractContextManager[None]:
        """Hold a permit for one attempt, from before its send until its answer. `send_by` is a monotonic time;
        raise Throttled if no permit can be had by then, BudgetUnavailable if the store cannot be reached (no call
        is then made). `interactive`: an HTTP read, which goes before background refreshes."""
        ...

    def throttled(self) -> None:
        """CAMS answered System.LimitControl: slow the deployment down."""
        ...

    def succeeded(self) -> None:
        """CAMS answered."""
        ...

    def settle(self, wait_until: float) -> None:
        """Before an invocation ends: wait (until `wait_until`, monotonic) for whatever the guarantee needs."""
        ...
