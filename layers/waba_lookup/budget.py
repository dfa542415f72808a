"""The account budget: the port every CAMS attempt goes through, and the choice of its store.

One implementation, SharedBudget (shared_budget.py): a sliding log of permits (sliding_log.py) in a LogStore, which
is DynamoDB (dynamodb.py) or Tablestore (ots.py) for the whole deployment when CAMS_BUDGET_TABLE is set, and else
an in-memory log of the instance's own (log_store.py) with floor(CAMS_QPS_BUDGET / CAMS_MAX_INSTANCES) as budget.
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
    store_failures: int = 0  # permits refused, or answers not written back, because the store failed

    def record_wait(self, seconds: float, interactive: bool) -> None:
        self.permits += 1
        (self.interactive_waits if interactive else self.waits).append(seconds)


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


def budget_for(settings: Settings) -> Budget:
    """The shared log in CAMS_BUDGET_TABLE (DynamoDB on AWS, Tablestore on FC), else the instance's own log with its
    share of CAMS_QPS_BUDGET (and of CAMS_INTERACTIVE_RESERVE, leaving background refreshes at least one call)."""
    from waba_lookup.log_store import LogStore, MemoryLogStore
    from waba_lookup.shared_budget import SharedBudget
    from waba_lookup.sliding_log import Policy

    budget, reserve = settings.cams_qps_budget, settings.cams_interactive_reserve
    if not settings.cams_budget_table:
        share = settings.calls_per_second
        policy = Policy(share, min(reserve // settings.cams_max_instances, share - 1), settings.call_seconds)
        return SharedBudget(MemoryLogStore(), policy, local=True)
    store: LogStore
    if settings.on_fc:  # Tablestore
        from waba_lookup.ots import TablestoreLogStore

        endpoint, instance = settings.tablestore_endpoint or "", settings.tablestore_instance or ""
        store = TablestoreLogStore(endpoint, instance, settings.cams_budget_table, settings.account_scope)
    else:
        from waba_lookup.dynamodb import DynamoLogStore

        store = DynamoLogStore(settings.cams_budget_table, settings.account_scope)
    return SharedBudget(store, Policy(budget, reserve, settings.call_seconds))
