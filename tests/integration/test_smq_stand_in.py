"""The local SMQ (formerly MNS) stand-in, driven by the real `aliyun-mns-sdk` client over real HTTP.

Every case goes through the SDK's own signer, XML encoders and decoders and error parsing, so what passes here is what
a worker built on the SDK will see. The stand-in's signature check is independent of the SDK (stdlib only). Time is
the stand-in's injected clock, moved forward instead of slept through, except for long polling and slow answers."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any
from urllib.error import HTTPError

import pytest
from mns.account import Account
from mns.mns_exception import MNSClientNetworkException, MNSServerException
from mns.queue import Message, Queue, QueueMeta

from waba_local.stand_ins.smq_stand_in import (
    ACCOUNT_ID,
    DEFAULT_ACCESS_KEY_ID,
    DEFAULT_ACCESS_KEY_SECRET,
    SmqStandIn,
)

pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated function:DeprecationWarning")  # the SDK's own
from tests.support import WRONG_TOKEN, assert_control_refuses, control, no_secret_leaves, stand_in_cli
from tests.support import OffsetClock as Clock

QUEUE = "waba-refresh"
STS_ID, STS_SECRET, STS_TOKEN = "STS.NUlocalSmqKey", "sts-secret-do-not-leak", "CAIS-smq-token-do-not-leak"


@pytest.fixture
def stand_in(clock: Clock) -> Iterator[SmqStandIn]:
    with SmqStandIn(clock=clock) as server:
        server.create_queue(QUEUE)
        yield server


@pytest.fixture
def clock() -> Clock:
    return Clock()


def account_for(
    server: SmqStandIn | str,
    key_id: str = DEFAULT_ACCESS_KEY_ID,
    secret: str = DEFAULT_ACCESS_KEY_SECRET,
    token: str = "",
    timeout: float | None = None,
) -> Account:
    account = Account(server if isinstance(server, str) else server.endpoint, key_id, secret, token)
    if timeout is not None:
        account.get_client().set_connection_timeout(timeout)  # one socket timeout: connect and every read
    return account


def queue_for(server: SmqStandIn | str, name: str = QUEUE, **kwargs: Any) -> Queue:
    return account_for(server, **kwargs).get_queue(name)


@pytest.fixture
def queue(stand_in: SmqStandIn) -> Queue:
    return queue_for(stand_in)


def server_error(call: Callable[[], Any]) -> MNSServerException:
    with pytest.raises(MNSServerException) as excinfo:
        call()
    return excinfo.value


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --- the happy path -------------------------------------------------------------------------------------------


def test_send_receive_delete_round_trip(stand_in: SmqStandIn, queue: Queue, clock: Clock) -> None:
    body = json.dumps({"waba": "123", "ñ": True})
    sent = queue.send_message(Message(body))
    assert re.fullmatch(r"[0-9A-F]{32}", sent.message_id)
    assert sent.message_body_md5 == hashlib.md5(b64(body).encode()).hexdigest().upper()  # of the base64 as sent
    assert [m.decoded() for m in stand_in.messages(QUEUE)] == [body]

    before = clock()
    received = queue.receive_message()
    assert received.message_body == body.encode()  # the SDK base64-decodes to bytes
    assert (received.message_id, received.dequeue_count, received.priority) == (sent.message_id, 1, 8)
    assert abs(received.enqueue_time / 1000 - before) < 2 and received.first_dequeue_time >= received.enqueue_time
    assert abs(received.next_visible_time / 1000 - (before + 30)) < 2  # the queue's VisibilityTimeout
    assert re.fullmatch(r"1-[A-Za-z0-9_-]{16,}", received.receipt_handle)
    [stored] = stand_in.messages(QUEUE)
    assert (stored.dequeue_count, stored.visible, stored.receipt_handle) == (1, False, received.receipt_handle)
    assert stand_in.visible_count(QUEUE) == 0

    queue.delete_message(received.receipt_handle)
    assert stand_in.messages(QUEUE) == []
    assert [(r.operation, r.status, r.code) for r in stand_in.requests] == [
        ("SendMessage", 201, ""),
        ("ReceiveMessage", 200, ""),
        ("DeleteMessage", 204, ""),
    ]
    assert {r.queue for r in stand_in.requests} == {QUEUE}
    assert stand_in.count("ReceiveMessage") == 1 and stand_in.count(status=204) == 1


def test_batches_keep_order_and_delete_together(stand_in: SmqStandIn, queue: Queue) -> None:
    sent = queue.batch_send_message([Message(f"m{i}") for i in range(16)])
    assert len({m.message_id for m in sent}) == 16
    first = queue.batch_receive_message(10)
    rest = queue.batch_receive_message(16, wait_seconds=1)  # fewer than asked: what there is, at once
    assert [m.message_body for m in first + rest] == [f"m{i}".encode() for i in range(16)]
    assert [m.message_id for m in first + rest] == [m.message_id for m in sent]
    handles = [m.receipt_handle for m in first + rest]
    assert len(set(handles)) == 16

    error = server_error(lambda: queue.batch_receive_message(16))
    assert error.type == "MessageNotExist"
    error = server_error(lambda: queue.batch_receive_message(17))
    assert (error.type, stand_in.requests[-1].status) == ("InvalidArgument", 400)
    assert "numOfMessages" in error.message

    error = server_error(lambda: queue.batch_delete_message([*handles[:15], "1-notAHandleTheStandInIssued"]))
    assert (error.type, stand_in.requests[-1].status) == ("MessageNotExist", 404)
    refused = {"ErrorCode": "MessageNotExist", "ErrorMessage": "Message not exist."}
    assert error.sub_errors == [{**refused, "ReceiptHandle": "1-notAHandleTheStandInIssued"}]
    assert error.request_id == stand_in.requests[-1].request_id
    assert [m.message_id for m in stand_in.messages(QUEUE)] == [sent[15].message_id]  # the 15 others are gone
    queue.batch_delete_message([handles[15]])
    assert stand_in.messages(QUEUE) == []


def test_create_queue_and_attributes(stand_in: SmqStandIn) -> None:
    account = account_for(stand_in)
    url = account.get_queue("waba-dead").create(QueueMeta(vis_timeout=60, delay_sec=5, polling_wait_sec=2))
    assert url == stand_in.queue_url("waba-dead")
    assert account.get_queue("waba-dead").create(QueueMeta(vis_timeout=60, delay_sec=5, polling_wait_sec=2)) == url
    assert [r.status for r in stand_in.requests] == [201, 204]  # the same attributes again: no change

    meta = account.get_queue("waba-dead").get_attributes()
    assert (meta.queue_name, meta.visibility_timeout, meta.delay_seconds, meta.polling_wait_seconds) == (
        "waba-dead",
        60,
        5,
        2,
    )
    assert (meta.maximum_message_size, meta.message_retention_period, meta.logging_enabled) == (65536, 345600, False)
    assert abs(meta.create_time - time.time()) < 5

    error = server_error(lambda: account.get_queue("waba-dead").create(QueueMeta(vis_timeout=61)))
    assert (error.type, stand_in.requests[-1].status) == ("QueueAlreadyExist", 409)
    error = server_error(lambda: account.get_queue("waba-new").create(QueueMeta(vis_timeout=43201)))
    assert error.type == "InvalidArgument" and "VisibilityTimeout" in error.message
    error = server_error(lambda: account.get_queue("1-starts-with-a-digit").create(QueueMeta()))
    assert (error.type, stand_in.requests[-1].status) == ("InvalidQueueName", 400)

    missing = account.get_queue("no-such-queue")
    for call in (missing.get_attributes, lambda: missing.send_message(Message("x")), missing.receive_message):
        error = server_error(call)
        assert (error.type, stand_in.requests[-1].status) == ("QueueNotExist", 404)
    assert error.host_id == f"http://{ACCOUNT_ID}.mns.ap-southeast-1.aliyuncs.com"


# --- queue semantics ------------------------------------------------------------------------------------------


def test_delays_per_message_and_per_queue(stand_in: SmqStandIn, queue: Queue, clock: Clock) -> None:
    queue.send_message(Message("later", delay_seconds=60))
    assert server_error(queue.receive_message).type == "MessageNotExist"
    clock.advance(59)
    assert server_error(queue.receive_message).type == "MessageNotExist"
    assert stand_in.messages(QUEUE)[0].dequeue_count == 0
    clock.advance(2)
    assert queue.receive_message().message_body == b"later"

    stand_in.create_queue("delayed", delay_seconds=30, message_retention_period=120)
    delayed = queue_for(stand_in, "delayed")
    delayed.send_message(Message("queue delay"))
    delayed.send_message(Message("no delay", delay_seconds=0))  # the message's own DelaySeconds wins
    assert delayed.receive_message().message_body == b"no delay"
    assert delayed.get_attributes().delay_messages == 1
    clock.advance(31)
    assert delayed.receive_message().message_body == b"queue delay"
    clock.advance(120)  # past the retention period: gone, received or not
    assert stand_in.messages("delayed") == []


def test_an_undeleted_message_comes_back(stand_in: SmqStandIn, queue: Queue, clock: Clock) -> None:
    queue.send_message(Message("retry me"))
    first = queue.receive_message()
    assert server_error(queue.receive_message).type == "MessageNotExist"  # in flight
    clock.advance(31)
    second = queue.receive_message()
    assert (second.message_id, second.dequeue_count, second.first_dequeue_time) == (
        first.message_id,
        2,
        first.first_dequeue_time,
    )
    assert second.receipt_handle != first.receipt_handle and second.receipt_handle.startswith("2-")

    error = server_error(lambda: queue.delete_message(first.receipt_handle))  # superseded by the second receive
    assert (error.type, stand_in.requests[-1].status) == ("MessageNotExist", 404)
    clock.advance(31)
    error = server_error(lambda: queue.delete_message(second.receipt_handle))  # expired at NextVisibleTime
    assert error.type == "MessageNotExist"
    third = queue.receive_message()
    queue.delete_message(third.receipt_handle)
    assert third.dequeue_count == 3 and stand_in.messages(QUEUE) == []


def test_change_visibility_gives_a_new_handle(stand_in: SmqStandIn, queue: Queue, clock: Clock) -> None:
    queue.send_message(Message("slow work"))
    received = queue.receive_message()
    changed = queue.change_message_visibility(received.receipt_handle, 120)
    assert changed.receipt_handle != received.receipt_handle
    assert abs(int(changed.next_visible_time) / 1000 - (clock() + 120)) < 2  # the SDK leaves it a string

    for call in (
        lambda: queue.delete_message(received.receipt_handle),
        lambda: queue.change_message_visibility(received.receipt_handle, 10),
    ):
        error = server_error(call)
        assert (error.type, stand_in.requests[-1].status) == ("MessageNotExist", 404)
    error = server_error(lambda: queue.delete_message("not-a-receipt-handle"))
    assert (error.type, stand_in.requests[-1].status) == ("ReceiptHandleError", 400)
    error = server_error(lambda: queue.change_message_visibility(changed.receipt_handle, 0))  # the SDK allows 0
    assert error.type == "InvalidArgument" and "VisibilityTimeout" in error.message

    clock.advance(60)  # past the queue's 30 s, not past the 120 s it was changed to
    assert server_error(queue.receive_message).type == "MessageNotExist"
    clock.advance(61)
    again = queue.receive_message()
    assert (again.message_id, again.dequeue_count) == (received.message_id, 2)


def test_long_polling_returns_as_soon_as_a_message_is_sent(stand_in: SmqStandIn, queue: Queue) -> None:
    results: list[Any] = []

    def poll() -> None:
        started = time.monotonic()
        message = queue_for(stand_in).receive_message(wait_seconds=5)  # its own Account: one connection each
        results.append((message.message_body, time.monotonic() - started))

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.3)
    queue.send_message(Message("wake up"))
    poller.join(timeout=5)
    [(body, waited)] = results
    assert body == b"wake up" and 0.25 < waited < 0.8  # woken by the send, not by a periodic re-check

    started = time.monotonic()
    assert server_error(lambda: queue.receive_message(wait_seconds=1)).type == "MessageNotExist"
    assert 0.9 < time.monotonic() - started < 2

    stand_in.create_queue("polling", polling_wait_seconds=1)  # the queue's PollingWaitSeconds when none is asked
    started = time.monotonic()
    assert server_error(queue_for(stand_in, "polling").receive_message).type == "MessageNotExist"
    assert 0.9 < time.monotonic() - started < 2

    error = server_error(lambda: queue.receive_message(wait_seconds=31))  # the SDK does not check the maximum
    assert error.type == "InvalidArgument" and "waitseconds" in error.message


def test_batch_send_limits(stand_in: SmqStandIn, queue: Queue) -> None:
    error = server_error(lambda: queue.batch_send_message([Message(f"m{i}") for i in range(17)]))
    assert (error.type, stand_in.requests[-1].status) == ("InvalidArgument", 400)
    big = "x" * 15000  # 20000 bytes once base64-encoded: 4 of them are more than 64 KB
    error = server_error(lambda: queue.batch_send_message([Message(big) for _ in range(4)]))
    assert (error.type, stand_in.requests[-1].status) == ("InvalidArgument", 400)
    assert "65536" in error.message
    assert stand_in.messages(QUEUE) == []  # refused whole
    queue.batch_send_message([Message(big) for _ in range(3)])
    assert len(stand_in.messages(QUEUE)) == 3

    stand_in.create_queue("small", maximum_message_size=1024)
    small = queue_for(stand_in, "small")
    error = server_error(lambda: small.send_message(Message("y" * 1000)))  # 1336 bytes as base64
    assert error.type == "InvalidArgument"
    error = server_error(lambda: small.batch_send_message([Message("fits"), Message("y" * 1000)]))
    assert (error.type, stand_in.requests[-1].status, stand_in.requests[-1].code) == (
        "InvalidArgument",
        500,
        "InvalidArgument",
    )
    ok, refused = error.sub_errors
    assert set(ok) == {"MessageId", "MessageBodyMD5"} and refused["ErrorCode"] == "InvalidArgument"
    assert [m.decoded() for m in stand_in.messages("small")] == ["fits"]  # the rest of a batch goes in


# --- authentication -------------------------------------------------------------------------------------------


def test_wrong_secret_and_unknown_key(stand_in: SmqStandIn) -> None:
    error = server_error(queue_for(stand_in, secret="not-the-secret").receive_message)
    assert (error.type, stand_in.requests[-1].status) == ("SignatureDoesNotMatch", 403)
    assert stand_in.requests[-1].access_key_id == DEFAULT_ACCESS_KEY_ID
    error = server_error(queue_for(stand_in, key_id="LTAI5tNobody").receive_message)
    assert (error.type, stand_in.requests[-1].status) == ("InvalidAccessKeyId", 403)
    assert stand_in.count(status=403) == 2 and stand_in.count(status=404) == 0


def test_sts_credentials(stand_in: SmqStandIn, clock: Clock) -> None:
    stand_in.add_sts(STS_ID, STS_SECRET, STS_TOKEN, expires_at=clock() + 60)
    queue_for(stand_in, key_id=STS_ID, secret=STS_SECRET, token=STS_TOKEN).send_message(Message("via sts"))
    assert stand_in.requests[-1].access_key_id == STS_ID and len(stand_in.messages(QUEUE)) == 1

    for token, code in (("", "InvalidAccessKeyId"), ("CAIS-some-other-token", "InvalidSecurityToken")):
        error = server_error(queue_for(stand_in, key_id=STS_ID, secret=STS_SECRET, token=token).receive_message)
        assert (error.type, stand_in.requests[-1].status) == (code, 403)
    clock.advance(61)
    error = server_error(queue_for(stand_in, key_id=STS_ID, secret=STS_SECRET, token=STS_TOKEN).receive_message)
    assert (error.type, stand_in.requests[-1].status) == ("SecurityTokenExpired", 403)
    error = server_error(queue_for(stand_in, token=STS_TOKEN).receive_message)  # a long-term key with a token
    assert error.type == "InvalidAccessKeyId"


def test_a_skewed_date_is_refused() -> None:
    with SmqStandIn(clock=lambda: time.time() + 16 * 60) as skewed:
        skewed.create_queue(QUEUE)
        error = server_error(queue_for(skewed).receive_message)
        assert (error.type, skewed.requests[-1].status) == ("TimeExpired", 408)
    with SmqStandIn(clock=lambda: time.time() - 14 * 60) as within:
        within.create_queue(QUEUE)
        queue_for(within).send_message(Message("14 minutes off is still accepted"))


class _Tamper:
    """Change a request after the SDK signed it."""

    def __init__(self, queue: Queue, change: Callable[[Any], None]) -> None:
        self.http = queue.mns_client.http
        self.send, self.change = self.http.send_request, change
        self.http.send_request = self

    def __call__(self, request: Any) -> Any:
        self.change(request)
        return self.send(request)


def test_tampering_and_bad_headers(stand_in: SmqStandIn) -> None:
    stand_in.create_queue("other")
    queue = queue_for(stand_in)
    _Tamper(queue, lambda r: setattr(r, "uri", r.uri.replace(QUEUE, "other")))
    assert server_error(lambda: queue.send_message(Message("x"))).type == "SignatureDoesNotMatch"

    queue = queue_for(stand_in)
    _Tamper(queue, lambda r: setattr(r, "data", r.data.replace(b"<MessageBody>", b"<MessageBody>A")))
    assert server_error(lambda: queue.send_message(Message("x"))).type == "InvalidDegist"  # [sic], SMQ's spelling

    queue = queue_for(stand_in)
    _Tamper(queue, lambda r: r.header.update({"x-mns-version": "2010-01-01"}))
    assert server_error(queue.receive_message).type == "InvalidVersionHeader"
    assert stand_in.messages("other") == [] and stand_in.messages(QUEUE) == []

    for path, code, status in (("/queues/" + QUEUE + "/messages", "MissingAuthorizationHeader", 400),):
        with pytest.raises(HTTPError) as http_error:
            urllib.request.urlopen(f"{stand_in.endpoint}{path}", timeout=5)
        body = http_error.value.read()
        assert http_error.value.code == status and f"<Code>{code}</Code>".encode() in body
        assert body.startswith(
            b'<?xml version="1.0" encoding="UTF-8"?>\n<Error xmlns="http://mns.aliyuncs.com/doc/v1/">'
        )
        assert re.fullmatch(r"[0-9A-F]{24}", http_error.value.headers["x-mns-request-id"])

    error = server_error(lambda: queue_for(stand_in).peek_message())  # served by SMQ, not by the stand-in
    assert (error.type, stand_in.requests[-1].status, stand_in.requests[-1].operation) == (
        "NotImplemented",
        501,
        "Unsupported",
    )


# --- faults ---------------------------------------------------------------------------------------------------


def test_fail_scoped_to_an_operation_then_cleared(stand_in: SmqStandIn, queue: Queue) -> None:
    stand_in.fail(times=None, status=503, code="InternalServerError", operation="ReceiveMessage")
    queue.send_message(Message("x"))  # another operation: not affected
    for _ in range(2):
        error = server_error(queue.receive_message)
        assert (error.type, stand_in.requests[-1].status) == ("InternalServerError", 503)
        assert error.request_id == stand_in.requests[-1].request_id
    stand_in.clear_faults()
    assert queue.receive_message().message_body == b"x" and stand_in.faults == []

    stand_in.fail()  # once, any operation
    assert server_error(lambda: queue.send_message(Message("y"))).type == "InternalError"
    queue.send_message(Message("y"))
    assert stand_in.count("ReceiveMessage", 503) == 2 and stand_in.count(status=500) == 1
    assert [m.decoded() for m in stand_in.messages(QUEUE)] == ["x", "y"]
    with pytest.raises(ValueError):
        stand_in.fail(operation="ReceiveMessages")  # a typo must not silently match nothing


def test_slow_answers_trip_the_sdks_socket_timeout(stand_in: SmqStandIn) -> None:
    queue = queue_for(stand_in, timeout=0.3)
    stand_in.slow(0.8, times=1, operation="SendMessage")
    started = time.monotonic()
    with pytest.raises(MNSClientNetworkException) as excinfo:
        queue.send_message(Message("late"))
    assert excinfo.value.type == "NetWorkException" and "timed out" in excinfo.value.message  # [sic], the SDK's
    assert 0.25 < time.monotonic() - started < 0.7
    queue.send_message(Message("next"))  # only one was slow; the SDK reconnected by itself
    time.sleep(0.6)
    # The slow one was served after the client gave up: it is in the queue too (a retry would duplicate it).
    assert sorted(m.decoded() for m in stand_in.messages(QUEUE)) == ["late", "next"]

    stand_in.slow(0.2)  # until cleared, any operation: slower than usual but within the timeout
    patient = queue_for(stand_in, timeout=2)
    started = time.monotonic()
    patient.receive_message()
    patient.receive_message()
    assert time.monotonic() - started >= 0.4
    stand_in.clear_faults()
    assert stand_in.faults == []


def test_dropped_connections(stand_in: SmqStandIn, queue: Queue) -> None:
    queue.send_message(Message("x"))
    stand_in.drop(times=1, operation="ReceiveMessage")
    assert queue.receive_message().message_body == b"x"  # the SDK resent it once, by itself
    assert [(r.operation, r.status, r.code) for r in stand_in.requests[-2:]] == [
        ("ReceiveMessage", 0, "Dropped"),
        ("ReceiveMessage", 200, ""),
    ]
    stand_in.drop(times=2, operation="DeleteMessage")
    with pytest.raises(MNSClientNetworkException) as excinfo:
        queue.delete_message(stand_in.messages(QUEUE)[0].receipt_handle or "")
    assert excinfo.value.type == "NetWorkException"
    assert stand_in.count("DeleteMessage") == 2 and len(stand_in.messages(QUEUE)) == 1


def test_http_control_plane(stand_in: SmqStandIn, queue: Queue) -> None:
    fault = {"kind": "fail", "times": 1, "status": 503, "code": "InternalServerError", "operation": "ReceiveMessage"}
    assert control(stand_in, "POST", "faults", fault)["faults"][0]["code"] == "InternalServerError"
    queue.send_message(Message("x"))
    assert server_error(queue.receive_message).type == "InternalServerError"

    control(stand_in, "POST", "faults", {"kind": "drop", "times": None})
    assert len(control(stand_in, "GET", "faults")["faults"]) == 1
    assert control(stand_in, "DELETE", "faults") == {"faults": []}
    received = queue.receive_message()

    view = control(stand_in, "GET", f"queues/{QUEUE}")
    assert (view["url"], view["visible"], view["attributes"]["VisibilityTimeout"]) == (stand_in.queue_url(QUEUE), 0, 30)
    [message] = view["messages"]
    assert (message["body"], message["dequeue_count"], message["receipt_handle"]) == (
        b64("x"),
        1,
        received.receipt_handle,
    )

    assert control(stand_in, "POST", "queues", {"name": "made-over-http", "visibility_timeout": 5})["url"].endswith(
        "/queues/made-over-http"
    )
    control(stand_in, "POST", "queues/made-over-http/messages", {"body": "seeded"})
    assert queue_for(stand_in, "made-over-http").receive_message().message_body == b"seeded"
    assert [(r["operation"], r["status"]) for r in control(stand_in, "GET", "requests")] == [
        ("SendMessage", 201),
        ("ReceiveMessage", 503),
        ("ReceiveMessage", 200),
        ("ReceiveMessage", 200),
    ]
    assert_control_refuses(
        stand_in,
        ("POST", "queues", {"name": "bad name"}, 400),
        ("GET", "queues/no-such-queue", None, 404),
        ("GET", "nothing-here", None, 404),
    )


# --- no secrets out -------------------------------------------------------------------------------------------


def test_no_secret_token_or_signature_leaves_the_stand_in(
    stand_in: SmqStandIn, capfd: pytest.CaptureFixture[str]
) -> None:
    sts = (STS_ID, STS_SECRET, STS_TOKEN)
    with no_secret_leaves(stand_in, capfd, sts, DEFAULT_ACCESS_KEY_SECRET, views=(f"queues/{QUEUE}",)) as tap:

        def spy(queue: Queue) -> Queue:
            http = queue.mns_client.http
            send = http.send_request

            def spied(request: Any) -> Any:
                tap.signatures.append(request.header["Authorization"].rpartition(":")[2])
                response = send(request)
                tap.answers.append(json.dumps(response.header) + response.data)
                return response

            http.send_request = spied
            return queue

        queues = [
            spy(queue_for(stand_in)),
            spy(queue_for(stand_in, key_id=STS_ID, secret=STS_SECRET, token=STS_TOKEN)),
            spy(queue_for(stand_in, key_id=STS_ID, secret=STS_SECRET, token=WRONG_TOKEN)),
            spy(queue_for(stand_in, secret="wrong-" + DEFAULT_ACCESS_KEY_SECRET)),
        ]
        for queue in queues:
            for call, args in (
                (queue.send_message, (Message("v"),)),
                (queue.receive_message, ()),
                (queue.get_attributes, ()),
            ):
                try:
                    call(*args)
                except MNSServerException:
                    pass


def test_cli_serves_and_prints_no_secret() -> None:
    queues = ("--queue", QUEUE, "--queue", "waba-dead")
    with stand_in_cli("smq_stand_in", *queues, lines=8, secret=DEFAULT_ACCESS_KEY_SECRET) as (banner, endpoint):
        assert f"ALIBABA_CLOUD_ACCESS_KEY_ID={DEFAULT_ACCESS_KEY_ID}\n" in banner
        assert f"REFRESH_QUEUE_URL={endpoint}/queues/{QUEUE}\n" in banner
        queue = queue_for(endpoint)
        queue.send_message(Message("from the cli"))
        assert queue.receive_message().message_body == b"from the cli"
        assert control(endpoint, "GET", "queues/waba-dead")["messages"] == []
