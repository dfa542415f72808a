"""The composition: builds each port's adapter from the settings, lazily (an adapter's SDK is imported only when
it is first needed). The only module that knows every adapter; the ports import none."""

from __future__ import annotations

from functools import lru_cache

from waba_lookup.budget import Budget
from waba_lookup.cache import ObjectStore, WabaCache
from waba_lookup.errors import ConfigurationError
from waba_lookup.queue import RefreshQueue
from waba_lookup.settings import Settings, get_settings


def budget_for(settings: Settings) -> Budget:
    """The shared record in CAMS_BUDGET_TABLE (DynamoDB on AWS, Tablestore on FC), else the instance's own with its
    share of CAMS_QPS_BUDGET (and of CAMS_INTERACTIVE_RESERVE, leaving background refreshes at least one call)."""
    from waba_lookup.budget.log import Policy
    from waba_lookup.budget.shared import SharedBudget
    from waba_lookup.budget.store import LogStore, MemoryLogStore

    budget, reserve = settings.cams_qps_budget, settings.cams_interactive_reserve
    if not settings.cams_budget_table:
        share = settings.calls_per_second
        policy = Policy(share, min(reserve // settings.cams_max_instances, share - 1), settings.call_seconds)
        return SharedBudget(MemoryLogStore(), policy, local=True)
    store: LogStore
    if settings.on_fc:
        from waba_lookup.budget.tablestore import TablestoreLogStore

        endpoint, instance = settings.tablestore_endpoint or "", settings.tablestore_instance or ""
        store = TablestoreLogStore(endpoint, instance, settings.cams_budget_table, settings.account_scope)
    else:
        from waba_lookup.budget.dynamodb import DynamoLogStore

        store = DynamoLogStore(settings.cams_budget_table, settings.account_scope)
    return SharedBudget(store, Policy(budget, reserve, settings.call_seconds))


def cache_for(settings: Settings) -> WabaCache | None:
    """The deployment's cache (S3 or OSS by CACHE_BACKEND), or None without CACHE_BUCKET. Clients are made lazily."""
    if not settings.cache_bucket:
        return None
    store: ObjectStore
    if settings.cache_backend == "oss":
        from waba_lookup.cache.oss import OssObjectStore

        store = OssObjectStore(settings.cache_bucket, settings.oss_region or "", settings.oss_endpoint or "")
    else:
        from waba_lookup.cache.s3 import S3ObjectStore

        store = S3ObjectStore(settings.cache_bucket)
    return WabaCache(store, settings.cache_prefix, settings.account_scope)


def refresh_queue_for(settings: Settings) -> RefreshQueue:
    """SQS on AWS, SMQ on Function Compute, at REFRESH_QUEUE_URL."""
    if not settings.refresh_queue_url:
        raise ConfigurationError("REFRESH_QUEUE_URL is not set: bulk refresh needs a queue")
    if settings.on_fc:
        from waba_lookup.queue.smq import SmqQueue

        return RefreshQueue(SmqQueue(settings.refresh_queue_url))
    from waba_lookup.queue.sqs import SqsBatches

    return RefreshQueue(SqsBatches(settings.refresh_queue_url))


@lru_cache(maxsize=1)
def get_refresh_queue() -> RefreshQueue:
    """The instance's RefreshQueue (one queue client per instance, not per request)."""
    return refresh_queue_for(get_settings())
