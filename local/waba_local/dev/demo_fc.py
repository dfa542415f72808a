"""`make demo`, part 5: a bulk refresh on Function Compute. POST /waba/refresh through the FC entry point sends to
SMQ; the local EventBridge trigger drains the queue into the FC worker, whose CAMS calls take permits from the
shared budget in Tablestore; failed items come back as delayed re-sends, and what can never succeed ends in the
dead-letter queue."""

from __future__ import annotations

import json
import time
from typing import Any

from waba_local.dev.apigw import load_handler
from waba_local.dev.console import Tally, heading, table
from waba_local.dev.eventbridge import LocalSmqTrigger, TriggerStats
from waba_local.dev.fc_local import fc_invocation
from waba_local.stand_ins import launch as stand_ins
from waba_local.stand_ins.emulator_state import busiest_window

BULK = 30


def bulk_fc_part(local: stand_ins.StandIns) -> None:
    """POST /waba/refresh on FC, drained by the FC worker, with a summary of where every message ended."""
    assert local.emulator is not None and local.smq is not None and local.oss is not None
    from waba_lookup.credentials import EnvironmentCredentials
    from waba_lookup.lookup import get_lookup
    from waba_lookup.queue.smq import build_queue

    heading(f"5. Function Compute: bulk refresh of {BULK + 2} items, SMQ drained by the FC worker")
    api, worker = load_handler("http_api"), load_handler("queue_worker")
    items: list[dict[str, Any]] = [
        {"CustSpaceId": f"cs-fc-{i:03d}", "IsvCode": f"isv-cs-fc-{i:03d}"} for i in range(BULK)
    ]
    items += [{"CustSpaceId": "cs-fc-flaky", "IsvCode": "isv-cs-fc-flaky"}, {"CustSpaceId": "cs-fc-down"}]
    local.emulator.clear_behaviours()
    local.forget_flow_control()
    print("  (part 4's flow control taken out of the budget's record, as a minute later: the whole 10 calls/s)")
    get_lookup.cache_clear()  # the worker is another function: a fresh instance
    local.emulator.set_behaviour("cs-fc-flaky", "5xx", times=3)  # fails one whole invocation: a delayed re-send
    local.emulator.set_behaviour("cs-fc-down", "error:Product.Unsubscript")
    body = json.dumps({"Items": items})
    calls_before, started = len(local.emulator.calls), time.monotonic()
    response = api.handler(*fc_invocation("POST", "/waba/refresh", {"Content-Type": "application/json"}, body))
    print(f"  POST /waba/refresh -> {response['statusCode']} {response['body']}  (BatchSendMessage to SMQ)")
    local.smq.send(stand_ins.FC_QUEUE, "not json", encode=False)
    print("  + 1 unprocessable message sent straight to the queue (it must end in the dead-letter queue)")
    credentials = EnvironmentCredentials()  # the role's, as the trigger reads the queue with its own role
    queue = build_queue(local.smq.endpoint, stand_ins.FC_QUEUE, credentials)
    dead_letters = build_queue(local.smq.endpoint, stand_ins.FC_DLQ, credentials)
    trigger = LocalSmqTrigger(queue, dead_letters, worker.handler, batch_size=16, batch_window_seconds=1.0)
    tally = Tally(len(items) + 1, started, lambda: (len(entries(local)), len(local.smq.messages(stand_ins.FC_DLQ))))

    def show(stats: TriggerStats) -> None:
        tally.update(f"{stats.outcomes.get('resent', 0)} re-sent with a delay")

    stats = trigger.drain(until_empty_for=12, on_batch=show)
    drained = time.monotonic() - started
    tally.end()
    calls = local.emulator.calls[calls_before:]
    summarise(local, stats, tally.to_last_answer(c.answered_at for c in calls), drained, calls)


def entries(local: stand_ins.StandIns) -> list[dict[str, Any]]:
    """This part's cache entries in OSS."""
    assert local.oss is not None
    return [json.loads(data) for key, data in local.oss.objects(local.bucket).items() if "/cs-fc-" in key]


def summarise(
    local: stand_ins.StandIns, stats: TriggerStats, answered: float, drained: float, calls: list[Any]
) -> None:
    assert local.smq is not None
    from waba_lookup.queue.redelivery import RETRY_DELAYS_SECONDS

    cached = entries(local)
    dead = [json.loads(m.body) for m in local.smq.messages(stand_ins.FC_DLQ)]
    busiest = busiest_window([c.arrived_at for c in calls], 1.0)
    rows = [
        ["OSS entries with a WABA", sum(1 for e in cached if e["Result"] == "OK")],
        ["OSS entries with a 403-class answer", sum(1 for e in cached if e["Result"] == "DENIED")],
        ["messages in the dead-letter queue", f"{len(dead)} ({', '.join(d.get('LastError', '?') for d in dead)})"],
        ["worker invocations / items re-sent", f"{stats.invocations} / {stats.outcomes.get('resent', 0)}"],
        [
            "CAMS calls / rejected by flow control",
            f"{len(calls)} / {sum(1 for c in calls if c.code == 'System.LimitControl')}",
        ],
        ["most CAMS calls in any sliding second", f"{busiest} (limit 10)"],
        ["shared budget: Tablestore requests per CAMS call", budget_cost()],
        ["time to the last answer", f"{answered:.1f} s (the POST to the last CAMS answer or cache write)"],
    ]
    print(table(["FC bulk refresh summary", "value"], rows))
    if answered_after_a_retry(calls):
        delay = RETRY_DELAYS_SECONDS[0]
        print(f"  The last answer was a second attempt: its item waited out the {delay} s delay of its re-send.")
    print(f"  The trigger stopped at {drained:.1f} s, after 12 s of an empty queue.")


def answered_after_a_retry(calls: list[Any]) -> bool:
    """Whether CAMS's last answer was for a customer it had been asked about before in this part: a retry."""
    if not calls:
        return False
    last = max(calls, key=lambda c: c.answered_at)
    return any(c.cust_space_id == last.cust_space_id for c in calls if c is not last)


def budget_cost() -> str:
    from waba_lookup.lookup import get_lookup

    stats = get_lookup().budget.stats
    return f"{stats.store_requests / max(1, stats.permits):.1f}"
