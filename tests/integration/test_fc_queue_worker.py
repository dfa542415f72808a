"""The FC queue worker end to end: SMQ trigger events (CloudEvents) in, the real SDKs to the emulator and to the
OSS and SMQ stand-ins. A batch succeeds or fails whole there, so failed items are sent on by the worker itself."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from queue_worker import app

from tests.support import EVENTS, OssCache, SmqQueues
from waba_local.dev.eventbridge import LocalSmqTrigger
from waba_local.dev.fc_local import FunctionMeta, LocalFcContext
from waba_local.stand_ins.emulator import CamsEmulator
from waba_local.stand_ins.tablestore_stand_in import TablestoreStandIn
from waba_lookup.errors import ConfigurationError, UpstreamFailed
from waba_lookup.queue import redelivery

Fc = tuple[CamsEmulator, OssCache, SmqQueues]


@pytest.fixture
def fc(cams_env: CamsEmulator, oss: OssCache, smq: SmqQueues) -> Fc:
    return cams_env, oss, smq


def invoke(event: Any, timeout: int = 60) -> dict[str, int]:
    raw = event if isinstance(event, bytes) else json.dumps(event).encode()
    answer: dict[str, int] = app.handler(raw, LocalFcContext(function=FunctionMeta(timeout=timeout)))
    return answer


def results(oss: OssCache) -> dict[str | None, str]:
    return {e["CustSpaceId"]: e["Result"] for e in oss.cache_objects().values()}


def test_a_single_event_and_an_array_are_both_accepted(fc: Fc) -> None:
    _, oss, _ = fc
    assert invoke(load_event_any("fc-smq-single"))["received"] == 1
    assert results(oss) == {"cs-acme-001": "OK"}


def test_plain_and_base64_bodies_and_an_attempt_count_are_read_alike(fc: Fc) -> None:
    _, oss, smq = fc
    answer = invoke(load_event_any("fc-smq-batch"))
    assert answer == {"received": 4, "resent": 0, "deadLettered": 0}
    assert results(oss) == {"cs-acme-001": "OK", "cs-globex-002": "OK", None: "OK", "cs-initech-003": "OK"}
    assert smq.bodies("queue") == [] and smq.bodies("dlq") == []


def test_poison_goes_straight_to_the_dead_letter_queue_without_calling_cams(fc: Fc) -> None:
    cams, oss, smq = fc
    answer = invoke(load_event_any("fc-smq-mixed-batch"))
    assert answer == {"received": 4, "resent": 0, "deadLettered": 2}
    dead = [json.loads(b) for b in smq.bodies("dlq")]
    assert sorted(d["Message"] for d in dead) == sorted(["not json at all", json.dumps({"CustSpaceId": 42})])
    assert all(d["LastError"] == "InvalidParameter" and d["Attempts"] == 0 for d in dead)
    assert set(results(oss)) == {"cs-acme-001", "cs-globex-002"}
    assert len(cams.calls) == 2


def test_a_transient_failure_is_resent_with_its_attempt_count_and_a_delay(fc: Fc) -> None:
    cams, _, smq = fc
    cams.set_behaviour("cs-acme-001", "5xx")
    assert invoke(load_event_any("fc-smq-single")) == {"received": 1, "resent": 1, "deadLettered": 0}
    [message] = smq.stand_in.messages(smq.queue)
    assert json.loads(message.body) == {"CustSpaceId": "cs-acme-001", "IsvCode": "isv-cs-acme-001", "Attempts": 1}
    assert message.visible_at - time.time() > redelivery.RETRY_DELAYS_SECONDS[0] - 2  # not before its delay


def test_after_its_last_attempt_an_item_is_dead_lettered_with_the_last_error(fc: Fc) -> None:
    cams, _, smq = fc
    cams.set_behaviour("cs-acme-001", "5xx")
    body = json.dumps({"CustSpaceId": "cs-acme-001", "IsvCode": "isv-cs-acme-001", "Attempts": 4})
    event = load_event_any("fc-smq-single")
    event["data"]["messageBody"] = body
    assert invoke(event) == {"received": 1, "resent": 0, "deadLettered": 1}
    [dead] = [json.loads(b) for b in smq.bodies("dlq")]
    assert dead["Attempts"] == 5 and dead["LastError"] == "ServiceUnavailable"
    assert json.loads(dead["Message"]) == {"CustSpaceId": "cs-acme-001", "IsvCode": "isv-cs-acme-001"}


def test_items_never_attempted_go_back_without_counting(fc: Fc) -> None:
    cams, oss, smq = fc
    cams.set_behaviour("*", "slow:0.4")
    events = [dict(load_event_any("fc-smq-single"), id=f"e{i}") for i in range(8)]
    for i, event in enumerate(events):
        event["data"] = dict(event["data"], messageBody=json.dumps({"CustSpaceId": f"cs-late-{i}"}))
    # room for a call or two, after what must follow the last: the cache write (OSS, 3 s), the re-sends (two SMQ calls
    # of up to 6 s each), the final wait and the margin, 17 s in all (static shares: no write-back)
    answer = invoke(events, timeout=20)
    assert 0 < answer["resent"] < 8 and answer["resent"] + len(oss.cache_objects()) == 8
    resent = [json.loads(m.body) for m in smq.stand_in.messages(smq.queue)]
    assert all(r["Attempts"] == 0 for r in resent)


def test_when_sending_on_fails_the_invocation_fails_and_the_retry_spends_nothing_twice(fc: Fc) -> None:
    cams, oss, smq = fc
    cams.set_behaviour("cs-globex-002", "5xx", times=3)
    smq.stand_in.fail(times=1, status=503, code="ServiceUnavailable", operation="BatchSendMessage")
    event = load_event_any("fc-smq-batch")
    with pytest.raises(UpstreamFailed):
        invoke(event)
    calls = len(cams.calls)
    # the trigger retries the whole batch: what was refreshed is skipped, the failed one is tried again
    assert invoke(event)["resent"] == 0
    assert len(cams.calls) == calls + 1
    assert len(results(oss)) == 4


def test_without_a_dead_letter_queue_the_invocation_fails_loudly(fc: Fc, monkeypatch: pytest.MonkeyPatch) -> None:
    cams, _, _ = fc
    monkeypatch.delenv("REFRESH_DLQ_URL")
    with pytest.raises(ConfigurationError, match="REFRESH_DLQ_URL"):
        invoke(load_event_any("fc-smq-single"))
    assert cams.calls == []


def test_every_message_ends_cached_or_dead_lettered(fc: Fc, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given short retry delays (the policy's shape, not its minutes), flaky customers, poison, and a re-send that
    # fails once
    cams, oss, smq = fc
    monkeypatch.setattr(redelivery, "RETRY_DELAYS_SECONDS", (1, 1, 1, 1))
    customers = [{"CustSpaceId": f"cs-bulk-{i:02d}", "IsvCode": f"isv-cs-bulk-{i:02d}"} for i in range(24)]
    cams.set_behaviour("cs-bulk-03", "5xx", times=5)  # recovers on a re-send
    cams.set_behaviour("cs-bulk-07", "5xx")  # never: dead-lettered after its fifth attempt
    cams.set_behaviour("cs-bulk-11", "error:Ram.PermissionDeny")  # cached as DENIED
    sender = smq.sender()
    sender.send_batch([json.dumps(c) for c in customers[:16]])
    sender.send_batch([json.dumps(c) for c in customers[16:]] + ["{not json"])
    smq.stand_in.fail(times=1, status=503, code="ServiceUnavailable", operation="BatchSendMessage")
    # When the trigger drains the queue into the worker
    trigger = LocalSmqTrigger(smq.receiver(), smq.receiver("dlq"), app.handler, batch_size=8, batch_window_seconds=0.5)
    stats = trigger.drain(until_empty_for=3)
    # Then every message is a cache entry or a dead letter, and nothing is lost
    cached = {e["CustSpaceId"] for e in oss.cache_objects().values()}
    dead = {dead_customer(body) for body in smq.bodies("dlq")}
    assert cached | dead == {c["CustSpaceId"] for c in customers} | {"{not json"}
    assert "cs-bulk-07" in dead and "cs-bulk-03" in cached and results(oss)["cs-bulk-11"] == "DENIED"
    assert stats.failed_invocations >= 1  # the failed re-send failed its invocation, which was retried
    assert smq.stand_in.visible_count(smq.queue) == 0


def dead_customer(body: str) -> str:
    """The customer of a dead letter: the worker's ({"Message", ...}) or the trigger's (a CloudEvent)."""
    dead = json.loads(body)
    message = dead["Message"] if "Message" in dead else dead["data"]["messageBody"]
    try:
        item = json.loads(message)
    except ValueError:
        return str(message)
    return str(item.get("CustSpaceId")) if isinstance(item, dict) else str(message)


def load_event_any(name: str) -> Any:
    """events/<name>.json, which for the SMQ trigger may be one CloudEvent or an array of them."""
    return json.loads((EVENTS / f"{name}.json").read_text())


def test_with_the_budget_store_down_items_go_back_later_without_counting_an_attempt(
    fc: Fc, monkeypatch: pytest.MonkeyPatch, emulator_credentials: tuple[str, str]
) -> None:
    cams, oss, smq = fc
    with TablestoreStandIn(credentials=dict([emulator_credentials])) as tablestore:  # no budget table in it
        monkeypatch.setenv("CAMS_BUDGET_TABLE", "no_such_budget_table")
        monkeypatch.setenv("TABLESTORE_ENDPOINT", tablestore.endpoint)
        monkeypatch.setenv("TABLESTORE_INSTANCE", tablestore.instance)
        answer = invoke(load_event_any("fc-smq-batch"))
    # fail closed: no CAMS call, every item re-sent with its attempt count unchanged, later, none dead-lettered
    assert cams.calls == [] and oss.cache_objects() == {}
    assert answer == {"received": 4, "resent": 4, "deadLettered": 0}
    resent = [json.loads(m.body) for m in smq.stand_in.messages(smq.queue)]
    assert [r.get("Attempts", 0) for r in resent] == [0, 0, 0, 2]  # the batch's last came with 2 already
    delays = [m.visible_at - m.enqueue_time for m in smq.stand_in.messages(smq.queue)]
    assert all(abs(d - redelivery.POSTPONED_DELAY_SECONDS) < 1 for d in delays), delays
