"""The account budget: the port every CAMS attempt goes through, and the choice of implementation.

Behind it:
- FallbackBudget (fallback.py): a SharedBudget (shared_budget.py), one sliding log for the whole deployment in a
  LogStore (DynamoDB, dynamodb.py; in memory for tests, log_store.py), with static shares while the store fails;
- Pacer (pacing.py): static per-instance shares, for no store and local runs without one.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

from waba_lookup.settings import Settings


@dataclass
class BudgetStats:
    """What permits cost this instance: for `make bench` and the logs, never for decisions."""

    permits: int = 0
    waits: list[float] = field(default_factory=list)  # seconds each permit waited, by arrival
    interactive_waits: list[float] = field(default_factory=list)
    store_requests: int = 0
    store_seconds: float = 0.0
    fallbacks: int = 0

    def record_wait(self, seconds: float, interactive: bool) -> None:
        self.permits += 1
        (self.interactive_waits if interactive else self.waits).append(seconds)


class Budget(Protocol):
    """Admission of CAMS attempts under the account's calls-per-second quota."""

    stats: BudgetStats
    release_seconds: float  # the longest writing an attempt's answer back can take, after CAMS answered

    def permit(self, send_by: float, interactive: bool) -> AbstractContextManager[None]:
        """Hold a permit for one attempt, from before its send until its answer. `send_by` is a monotonic time;
        raise Throttled (BudgetUnavailable when the store is down and there is no fallback) if no permit can be
        had by then. `interactive`: an HTTP read, which goes before background refreshes."""
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


def budget_for(settings: Settings) -> Budget:
    """The shared budget when CAMS_BUDGET_TABLE is set (DynamoDB on AWS, Tablestore on FC), else static shares of
    CAMS_QPS_BUDGET."""
    from waba_lookup.pacing import Pacer

    if not settings.cams_budget_table:
        return Pacer(settings.calls_per_second)
    from waba_lookup.fallback import FallbackBudget
    from waba_lookup.log_store import LogStore

    store: LogStore
    if settings.on_fc:  # Tablestore
        from waba_lookup.ots import TablestoreLogStore

        endpoint, instance = settings.tablestore_endpoint or "", settings.tablestore_instance or ""
        store = TablestoreLogStore(endpoint, instance, settings.cams_budget_table, settings.account_scope)
    else:
        from waba_lookup.dynamodb import DynamoLogStore

        store = DynamoLogStore(settings.cams_budget_table, settings.account_scope)
    return FallbackBudget.from_settings(store, settings)
