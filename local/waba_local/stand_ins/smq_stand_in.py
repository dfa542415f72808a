"""A local stand-in for Alibaba Cloud SMQ (Simple Message Queue, formerly MNS) that the real `aliyun-mns-sdk` talks to.

It serves the queue API the SDK's `Queue` uses, checks signatures as SMQ does, records every request, and fails on
demand. What it serves, its control plane (faults, queues) and how to run it: docs/stand-ins.md#smq.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from waba_local.stand_ins.smq_protocol import (
    API_VERSION,
    DEFAULT_PRIORITY,
    MAX_WAIT_SECONDS,
    OPERATIONS,
    QUEUE_LIMITS,
    UNSUPPORTED,
    KeyRing,
    MessageSpec,
    SmqError,
    SmqRequest,
    body_md5,
    bounded,
    check_content_md5,
    check_queue_name,
    check_receipt_handle,
    claimed_access_key_id,
    error_xml,
    invalid_value,
    millis,
    new_message_id,
    new_receipt_handle,
    new_request_id,
    parse_message,
    parse_messages,
    parse_queue_attributes,
    parse_receipt_handles,
    route,
    verify,
    xml_document,
)
from waba_local.stand_ins.stand_in_base import (
    Answer,
    FaultyStandIn,
    StandInHandler,
    cli_parser,
    serve_until_interrupted,
)

DEFAULT_ACCESS_KEY_ID = "LTAI5tLocalSmqKey"
DEFAULT_ACCESS_KEY_SECRET = "local-smq-secret"
ACCOUNT_ID = "5123456789012345"  # the endpoint's account id (in HostId; real endpoints are <account>.mns.<region>...)
MAX_BODY = 1 << 20  # a full batch is 64 KB of bodies plus XML; refuse to buffer much more
RECHECK_SECONDS = 1.0  # a long poll re-reads the clock at least this often (an injected clock may jump)


@dataclass(frozen=True)
class StoredMessage:
    """A message as the queue holds it. `body` is the text as sent: base64 when the SDK encodes (its default)."""

    message_id: str
    body: str
    priority: int
    enqueue_time: float  # epoch seconds, by the stand-in's clock
    visible_at: float  # when it can next be received (NextVisibleTime)
    dequeue_count: int
    first_dequeue_time: float | None
    receipt_handle: str | None  # the current one, from the latest receive or visibility change
    visible: bool  # visible_at has passed, when this copy was taken

    def decoded(self) -> str:
        """The body as `queue.receive_message()` returns it with the SDK's default base64 encoding (as text)."""
        return base64.b64decode(self.body, validate=True).decode()


@dataclass(frozen=True)
class RequestRecord:
    """One answered request. status 0 means the connection was dropped without an answer."""

    operation: str
    queue: str | None
    status: int
    code: str  # the SMQ error code ("" on success, the first entry's code for a batch partial failure, "Dropped")
    request_id: str
    access_key_id: str | None  # the id the Authorization header named (not a secret), checked out or not


@dataclass
class _Message:
    message_id: str
    body: str
    priority: int
    enqueue_time: float
    visible_at: float
    seq: int
    dequeue_count: int = 0
    first_dequeue_time: float | None = None
    receipt_handle: str | None = None

    def snapshot(self, now: float) -> StoredMessage:
        return StoredMessage(
            self.message_id,
            self.body,
            self.priority,
            self.enqueue_time,
            self.visible_at,
            self.dequeue_count,
            self.first_dequeue_time,
            self.receipt_handle,
            self.visible_at <= now,
        )


@dataclass
class _Queue:
    name: str
    attributes: dict[str, int | bool]
    created: float
    modified: float
    messages: dict[str, _Message] = field(default_factory=dict)  # by MessageId, in enqueue order
    handles: dict[str, str] = field(default_factory=dict)  # current receipt handle -> MessageId

    def setting(self, name: str) -> int:
        return int(self.attributes[name])


class _Handler(StandInHandler):
    SERVER_NAME, MAX_BODY, REQUEST = "smq-stand-in", MAX_BODY, SmqRequest
    do_GET = do_PUT = do_DELETE = do_POST = StandInHandler._dispatch


class SmqStandIn(FaultyStandIn[RequestRecord]):
    """One SMQ account on 127.0.0.1 with its queues, AccessKeys and STS credentials.

    `clock` (epoch seconds) judges the Date, STS expiry, delays, visibility and retention. Pass one that runs ahead
    to provoke TimeExpired, or one you can move forward (e.g. `lambda: time.time() + offset[0]`) to skip delays and
    visibility timeouts without sleeping; a jump of a few minutes stays within the 15-minute Date window.

    A `drop`: the SDK resends a request once, at once, when its connection is closed without an answer (it takes
    that for a stale kept-alive connection), so one drop is invisible to it: two in a row reach the caller."""

    OPERATIONS, ERROR, HANDLER = OPERATIONS, SmqError, _Handler
    THREAD_NAME, DESCRIPTION = "smq-stand-in", "the SMQ stand-in"

    def __init__(
        self,
        region: str = "ap-southeast-1",
        credentials: dict[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        static = {DEFAULT_ACCESS_KEY_ID: DEFAULT_ACCESS_KEY_SECRET} if credentials is None else dict(credentials)
        super().__init__(host, port, KeyRing(static), clock)
        self.region = region
        self._changed = threading.Condition(self._lock)  # a message was sent or made visible, or the server stops
        self._queues: dict[str, _Queue] = {}
        self._seq = 0

    def _wake(self) -> None:
        with self._changed:
            self._changed.notify_all()  # long polls

    def queue_url(self, name: str) -> str:
        return f"{self.endpoint}/queues/{name}"

    # --- setup and inspection --------------------------------------------------------------------------------

    def create_queue(
        self,
        name: str,
        visibility_timeout: int = 30,
        delay_seconds: int = 0,
        polling_wait_seconds: int = 0,
        maximum_message_size: int = 65536,
        message_retention_period: int = 345600,
    ) -> str:
        """Create the queue (or set the attributes of an existing one, keeping its messages); return its URL
        (only the path, /queues/<name>, before start()). No request is recorded.

        Attributes outside SMQ's ranges raise SmqError (InvalidArgument), as CreateQueue would answer."""
        check_queue_name(name)
        given = {
            "VisibilityTimeout": visibility_timeout,
            "DelaySeconds": delay_seconds,
            "PollingWaitSeconds": polling_wait_seconds,
            "MaximumMessageSize": maximum_message_size,
            "MessageRetentionPeriod": message_retention_period,
        }
        attributes: dict[str, int | bool] = {"LoggingEnabled": False}
        for attribute, value in given.items():
            low, high, default = QUEUE_LIMITS[attribute]
            unit = "bytes" if "Size" in attribute else "seconds"
            attributes[attribute] = bounded(str(value), attribute, low, high, default, unit)
        now = self._clock()
        with self._lock:
            existing = self._queues.get(name)
            if existing is None:
                self._queues[name] = _Queue(name, attributes, now, now)
            elif existing.attributes != attributes:
                existing.attributes, existing.modified = attributes, now
        return self.queue_url(name) if self._server is not None else f"/queues/{name}"

    def send(self, queue: str, body: str, delay_seconds: int | None = None, encode: bool = True) -> str:
        """Enqueue a message directly (no request recorded), base64-encoded as the SDK sends by default; its id."""
        text = base64.b64encode(body.encode()).decode() if encode else body
        with self._changed:
            message = self._enqueue_locked(self._queue(queue), MessageSpec(text, delay_seconds, DEFAULT_PRIORITY))
            self._changed.notify_all()
        return message.message_id

    def messages(self, queue: str) -> list[StoredMessage]:
        """Every message of the queue, visible or not, in enqueue order."""
        now = self._clock()
        with self._lock:
            found = self._queue(queue)
            self._expire_locked(found, now)
            return [message.snapshot(now) for message in found.messages.values()]

    def visible_count(self, queue: str) -> int:
        return sum(1 for message in self.messages(queue) if message.visible)

    # --- the API ---------------------------------------------------------------------------------------------

    def handle(self, request: SmqRequest) -> Answer:
        """Answer one SMQ request and record it."""
        request_id = new_request_id()
        query = request.query()
        target = route(request, query)
        op, queue = target.operation, target.queue
        claimed = claimed_access_key_id(request)
        try:
            faulted = self._front_end(op, RequestRecord(op, queue, 0, "Dropped", request_id, claimed))
            if faulted is not None:  # before headers, signatures or queues are looked at
                return faulted
            keys = self._key_ring()
            verify(request, keys, self._clock())
            check_content_md5(request)
            if op == UNSUPPORTED or queue is None:
                raise SmqError("NotImplemented")
            answer = self._serve(op, queue, request, query, request_id)
        except SmqError as error:
            answer = self._error(error, request_id)
            code = error.code
        else:
            code = answer.code
        self._record(RequestRecord(op, queue, answer.status, code, request_id, claimed))
        return answer

    def _serve(self, op: str, name: str, request: SmqRequest, query: dict[str, str], request_id: str) -> Answer:
        if op == "CreateQueue":
            return self._create_queue(name, request, request_id)
        if op in ("ReceiveMessage", "BatchReceiveMessage"):
            count = 1
            if op == "BatchReceiveMessage":
                count = bounded(query.get("numofmessages"), "numOfMessages", 1, 16, 16, "")
            received = self._receive(name, count, query.get("waitseconds"))
            if op == "ReceiveMessage":
                return self._xml(200, request_id, "Message", _received_fields(received[0]))
            return self._xml(200, request_id, "Messages", [("Message", _received_fields(m)) for m in received])
        if op == "SendMessage":
            return self._send_one(name, parse_message(request.body), request_id)
        if op == "BatchSendMessage":
            return self._send_batch(name, parse_messages(request.body), request_id)
        if op == "DeleteMessage":
            handle = query.get("receipthandle") or ""
            if not handle:
                raise SmqError("MissingReceiptHandle")
            with self._lock:
                self._delete_locked(self._queue(name), handle, self._clock())
            return self._answer(204, request_id)
        if op == "BatchDeleteMessage":
            return self._delete_batch(name, parse_receipt_handles(request.body), request_id)
        if op == "ChangeMessageVisibility":
            return self._change_visibility(name, query, request_id)
        with self._lock:  # GetQueueAttributes
            queue = self._queue(name)
            fields = _attribute_fields(queue, self._clock())
        return self._xml(200, request_id, "Queue", fields)

    def _create_queue(self, name: str, request: SmqRequest, request_id: str) -> Answer:
        check_queue_name(name)
        attributes = parse_queue_attributes(request.body)
        now = self._clock()
        with self._lock:
            existing = self._queues.get(name)
            if existing is not None and existing.attributes != attributes:
                raise SmqError("QueueAlreadyExist")
            if existing is None:
                self._queues[name] = _Queue(name, attributes, now, now)
        # The SDK reads Location on any success, so an unchanged re-create (204) carries it too.
        location = {"Location": f"http://{request.header('host') or self._address[0]}/queues/{name}"}
        return self._answer(201 if existing is None else 204, request_id, location)

    def _send_one(self, name: str, spec: MessageSpec, request_id: str) -> Answer:
        with self._changed:
            queue = self._queue(name)
            _check_size(queue, spec)
            message = self._enqueue_locked(queue, spec)
            self._changed.notify_all()
        fields = [("MessageId", message.message_id), ("MessageBodyMD5", body_md5(message.body))]
        return self._xml(201, request_id, "Message", fields)

    def _send_batch(self, name: str, specs: list[MessageSpec], request_id: str) -> Answer:
        """Each message is enqueued or refused on its own; any refusal makes the answer a 500 listing both."""
        entries: list[tuple[str, Any]] = []
        first_error = ""
        with self._changed:
            queue = self._queue(name)
            for spec in specs:
                try:
                    _check_size(queue, spec)
                except SmqError as error:
                    entries.append(("Message", [("ErrorCode", error.code), ("ErrorMessage", error.message)]))
                    first_error = first_error or error.code
                    continue
                message = self._enqueue_locked(queue, spec)
                entries.append(
                    ("Message", [("MessageId", message.message_id), ("MessageBodyMD5", body_md5(message.body))])
                )
            self._changed.notify_all()
        answer = self._xml(500 if first_error else 201, request_id, "Messages", entries)
        answer.code = first_error
        return answer

    def _delete_batch(self, name: str, handles: list[str], request_id: str) -> Answer:
        """Each handle is deleted or refused on its own; any refusal makes the answer a 404 listing the refused."""
        errors: list[tuple[str, Any]] = []
        with self._lock:
            queue = self._queue(name)
            now = self._clock()
            for handle in handles:
                try:
                    self._delete_locked(queue, handle, now)
                except SmqError as error:
                    fields = [("ErrorCode", error.code), ("ErrorMessage", error.message), ("ReceiptHandle", handle)]
                    errors.append(("Error", fields))
        if not errors:
            return self._answer(204, request_id)
        answer = self._xml(404, request_id, "Errors", errors)
        answer.code = errors[0][1][0][1]
        return answer

    def _change_visibility(self, name: str, query: dict[str, str], request_id: str) -> Answer:
        handle = query.get("receipthandle") or ""
        if not handle:
            raise SmqError("MissingReceiptHandle")
        if not query.get("visibilitytimeout"):
            raise SmqError("MissingVisibilityTimeout")
        low, high, default = QUEUE_LIMITS["VisibilityTimeout"]
        timeout = bounded(query["visibilitytimeout"], "VisibilityTimeout", low, high, default)
        with self._changed:
            queue = self._queue(name)
            now = self._clock()
            message = self._in_flight_locked(queue, handle, now)
            del queue.handles[handle]  # the old handle stops working
            message.receipt_handle = new_receipt_handle(message.dequeue_count)
            queue.handles[message.receipt_handle] = message.message_id
            message.visible_at = now + timeout
            self._changed.notify_all()
            fields = [("ReceiptHandle", message.receipt_handle), ("NextVisibleTime", millis(message.visible_at))]
        return self._xml(200, request_id, "ChangeVisibility", fields)

    def _receive(self, name: str, count: int, wait_text: str | None) -> list[StoredMessage]:
        """Up to `count` visible messages, oldest visible first; with a wait, block until one is visible or the wait
        ends (a condition variable woken by sends and visibility changes, and at the next due time)."""
        with self._changed:
            queue = self._queue(name)
            wait = bounded(wait_text, "waitseconds", 0, MAX_WAIT_SECONDS, queue.setting("PollingWaitSeconds"))
            deadline = time.monotonic() + wait
            while True:
                queue = self._queue(name)  # re-read: the queue may have been replaced meanwhile
                now = self._clock()
                taken = self._take_locked(queue, count, now)
                if taken:
                    return taken
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping.is_set():
                    raise SmqError("MessageNotExist")
                due = min((m.visible_at for m in queue.messages.values() if m.visible_at > now), default=None)
                until_due = RECHECK_SECONDS if due is None else max(due - now, 0.001)
                self._changed.wait(min(remaining, until_due, RECHECK_SECONDS))

    def _take_locked(self, queue: _Queue, count: int, now: float) -> list[StoredMessage]:
        self._expire_locked(queue, now)
        visible = sorted(
            (m for m in queue.messages.values() if m.visible_at <= now), key=lambda m: (m.visible_at, m.seq)
        )
        taken = []
        for message in visible[:count]:
            if message.receipt_handle is not None:
                queue.handles.pop(message.receipt_handle, None)
            message.dequeue_count += 1
            if message.first_dequeue_time is None:
                message.first_dequeue_time = now
            message.receipt_handle = new_receipt_handle(message.dequeue_count)
            queue.handles[message.receipt_handle] = message.message_id
            message.visible_at = now + queue.setting("VisibilityTimeout")
            taken.append(message.snapshot(now))
        return taken

    def _in_flight_locked(self, queue: _Queue, handle: str, now: float) -> _Message:
        """The message a receipt handle names, while that handle is its latest and its NextVisibleTime is ahead."""
        check_receipt_handle(handle)
        message = queue.messages.get(queue.handles.get(handle, ""))
        if message is None or message.receipt_handle != handle or now >= message.visible_at:
            raise SmqError("MessageNotExist")
        return message

    def _delete_locked(self, queue: _Queue, handle: str, now: float) -> None:
        message = self._in_flight_locked(queue, handle, now)
        del queue.handles[handle]
        del queue.messages[message.message_id]

    def _enqueue_locked(self, queue: _Queue, spec: MessageSpec) -> _Message:
        now = self._clock()
        delay = queue.setting("DelaySeconds") if spec.delay_seconds is None else spec.delay_seconds
        self._seq += 1
        message = _Message(new_message_id(), spec.body, spec.priority, now, now + delay, self._seq)
        queue.messages[message.message_id] = message
        return message

    def _expire_locked(self, queue: _Queue, now: float) -> None:
        retention = queue.setting("MessageRetentionPeriod")
        for message in [m for m in queue.messages.values() if now >= m.enqueue_time + retention]:
            del queue.messages[message.message_id]
            if message.receipt_handle is not None:
                queue.handles.pop(message.receipt_handle, None)

    def _queue(self, name: str) -> _Queue:
        if name not in self._queues:
            raise SmqError("QueueNotExist")
        return self._queues[name]

    def _answer(self, status: int, request_id: str, headers: dict[str, str] | None = None, body: bytes = b"") -> Answer:
        # The SDK looks x-mns-request-id up case-sensitively in the headers as sent: keep it lower-case.
        return Answer(status, {"x-mns-request-id": request_id, "x-mns-version": API_VERSION, **(headers or {})}, body)

    def _xml(self, status: int, request_id: str, root: str, fields: list[tuple[str, Any]]) -> Answer:
        content = {"Content-Type": "text/xml;charset=utf-8"}
        return self._answer(status, request_id, content, xml_document(root, fields))

    def _error(self, error: SmqError, request_id: str) -> Answer:
        body = error_xml(error, request_id, self.host_id)
        return self._answer(error.status, request_id, {"Content-Type": "text/xml;charset=utf-8"}, body)

    @property
    def host_id(self) -> str:
        return f"http://{ACCOUNT_ID}.mns.{self.region}.aliyuncs.com"

    def body_refusal(self, too_large: bool, target: str) -> Answer:
        if too_large:
            error = invalid_value("the length of the request body", 0, MAX_BODY, "bytes")
        else:
            error = SmqError("InvalidArgument", "Bad Content-Length or chunk size.")
        request_id = new_request_id()
        body = error_xml(error, request_id, self.host_id)
        return Answer(error.status, {"x-mns-request-id": request_id, "Content-Type": "text/xml;charset=utf-8"}, body)

    # --- the control plane: queues besides faults and requests -----------------------------------------------

    def _control(self, method: str, route: str, request: dict[str, Any]) -> Any:
        """POST queues, GET queues/<name>, POST queues/<name>/messages."""
        parts = route.split("/")
        if (method, route) == ("POST", "queues"):
            name = str(request.pop("name"))
            return {"url": self.create_queue(name, **request)}
        if method == "GET" and len(parts) == 2 and parts[0] == "queues":
            return self._queue_view(parts[1])
        if method == "POST" and len(parts) == 3 and parts[0] == "queues" and parts[2] == "messages":
            encoded = bool(request.get("base64", True))
            return {"message_id": self.send(parts[1], str(request["body"]), request.get("delay_seconds"), encoded)}
        return None

    def _queue_view(self, name: str) -> dict[str, Any]:
        messages = self.messages(name)
        with self._lock:
            attributes = dict(self._queues[name].attributes)
        return {
            "name": name,
            "url": self.queue_url(name),
            "attributes": attributes,
            "visible": sum(1 for message in messages if message.visible),
            "messages": [asdict(message) for message in messages],
        }


def _check_size(queue: _Queue, spec: MessageSpec) -> None:
    limit = queue.setting("MaximumMessageSize")
    if len(spec.body.encode()) > limit:
        raise invalid_value("the length of MessageBody", 1, limit, "bytes")


def _received_fields(message: StoredMessage) -> list[tuple[str, Any]]:
    return [
        ("MessageId", message.message_id),
        ("ReceiptHandle", message.receipt_handle or ""),
        ("MessageBodyMD5", body_md5(message.body)),
        ("MessageBody", message.body),
        ("EnqueueTime", millis(message.enqueue_time)),
        ("NextVisibleTime", millis(message.visible_at)),
        ("FirstDequeueTime", millis(message.first_dequeue_time or message.enqueue_time)),
        ("DequeueCount", str(message.dequeue_count)),
        ("Priority", str(message.priority)),
    ]


def _attribute_fields(queue: _Queue, now: float) -> list[tuple[str, Any]]:
    active = sum(1 for m in queue.messages.values() if m.visible_at <= now)
    inactive = sum(1 for m in queue.messages.values() if m.visible_at > now and m.dequeue_count > 0)
    delayed = sum(1 for m in queue.messages.values() if m.visible_at > now and m.dequeue_count == 0)
    fields: list[tuple[str, Any]] = [("QueueName", queue.name)]
    fields += [(name, str(queue.attributes[name])) for name in QUEUE_LIMITS]
    fields += [
        ("ActiveMessages", str(active)),
        ("InactiveMessages", str(inactive)),
        ("DelayMessages", str(delayed)),
        ("CreateTime", str(int(queue.created))),
        ("LastModifyTime", str(int(queue.modified))),
        ("LoggingEnabled", "True" if queue.attributes["LoggingEnabled"] else "False"),
    ]
    return fields


def main(argv: list[str] | None = None) -> None:
    """CLI: serve until Ctrl-C, printing what a client needs (never the secret itself)."""
    parser = cli_parser("waba_local.stand_ins.smq_stand_in", __doc__, 9100)
    parser.add_argument("--region", default="ap-southeast-1", help="region named in error HostIds")
    parser.add_argument("--queue", action="append", default=[], help="queue to create (repeatable)")
    parser.add_argument("--visibility-timeout", type=int, default=30, help="VisibilityTimeout of those queues")
    args = parser.parse_args(argv)
    with SmqStandIn(region=args.region, host=args.host, port=args.port) as stand_in:
        urls = [stand_in.create_queue(name, visibility_timeout=args.visibility_timeout) for name in args.queue]
        lines = [
            f"SMQ stand-in listening on {stand_in.endpoint} (account {ACCOUNT_ID}, region {stand_in.region})",
            f"ALIBABA_CLOUD_ACCESS_KEY_ID={DEFAULT_ACCESS_KEY_ID}",
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET: waba_local.stand_ins.smq_stand_in.DEFAULT_ACCESS_KEY_SECRET",
            f"REFRESH_QUEUE_URL={urls[0] if urls else stand_in.queue_url('<queue>')}",
            f"queues: {', '.join(urls) or '(none)'}",
            *stand_in.control_lines(
                {"kind": "fail", "times": 1, "status": 500, "code": "InternalError"}, "queues/<queue>"
            ),
        ]
        serve_until_interrupted(lines)


if __name__ == "__main__":
    main()
