"""What the local stand-ins share: serving in a daemon thread, the raw request, injected faults, the record of
requests, the HTTP handler, the control plane and the CLI's common arguments. The OSS, SMQ and Tablestore stand-ins
are each a `FaultyStandIn` over their own protocol; the CAMS emulator serves the same way (`ServedInThread`).

The control plane's routes: docs/stand-ins.md#the-control-plane.
"""

from __future__ import annotations

import argparse
import hmac
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

from waba_local.stand_ins.emulator_http import TrackingServer


class ServiceError(Exception):
    """A service's error answer: its code, HTTP status and message. Messages come from the service's ERRORS table
    (code -> (status, message)) or the raising site, never from secrets."""

    ERRORS: ClassVar[Mapping[str, tuple[int, str]]] = {}

    def __init__(self, code: str, message: str | None = None, status: int | None = None) -> None:
        default_status, default_message = self.ERRORS.get(code, (500, "Injected fault."))
        self.code = code
        self.status = default_status if status is None else status
        self.message = default_message if message is None else message
        super().__init__(code)


def error_fields(error: ServiceError, request_id: str, host_id: str) -> list[tuple[str, str]]:
    """The fields an XML error document (OSS's, SMQ's) starts with: Code, Message, RequestId, HostId."""
    return [("Code", error.code), ("Message", error.message), ("RequestId", request_id), ("HostId", host_id)]


FAULT_KINDS = ("fail", "slow", "drop")
CONTROL_PREFIX = "/_stand_in/"  # the unsigned control plane's paths: faults, requests and each stand-in's own


@dataclass
class Answer:
    """What a stand-in answers: status, headers, body; or, with `drop`, nothing (the connection is closed)."""

    status: int
    headers: dict[str, str]
    body: bytes = b""
    drop: bool = False
    code: str = ""  # the error code to record when the status does not say it (SMQ's batch partial failures)


def json_answer(status: int, payload: Any) -> Answer:
    """A control-plane answer."""
    return Answer(status, {"Content-Type": "application/json"}, json.dumps(payload).encode())


@dataclass(frozen=True)
class WireRequest:
    """What arrived on the wire: the raw request-target, header names lower-cased, the body."""

    method: str
    target: str
    headers: dict[str, list[str]]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        values = self.headers.get(name)
        return ",".join(value.strip() for value in values) if values else None

    @property
    def raw_path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def raw_query(self) -> str:
        return self.target.partition("?")[2]


def cli_parser(module: str, doc: str | None, port: int) -> argparse.ArgumentParser:
    """A stand-in CLI's parser (`python -m <module>`, described by the first line of `doc`) with the arguments they all
    take: --host, and --port (`port` by default)."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=(doc or "").partition("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=port, help=f"port to bind, 0 for any free port (default {port})")
    return parser


def serve_until_interrupted(lines: list[str]) -> None:
    """A CLI's last step, its stand-in serving in its thread: print what a client needs, then wait for Ctrl-C."""
    if lines:
        print("\n".join(lines), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print("stopped", flush=True)


@dataclass
class KeyRing:
    """AccessKeyId -> secret for long-term keys, and STS keys with their token and expiry (epoch seconds). A
    protocol's KeyRing says how it refuses a key (`rejection`), in that service's own error."""

    static: dict[str, str] = field(default_factory=dict)
    sts: dict[str, tuple[str, str, float]] = field(default_factory=dict)  # id -> (secret, token, expires_at)

    def secret_for(self, access_key_id: str, token: str | None, now: float) -> str:
        if access_key_id in self.sts:
            secret, expected, expires_at = self.sts[access_key_id]
            if token is None:
                raise self.rejection("no token", access_key_id)  # without its token an STS key id is nobody's
            if not hmac.compare_digest(token.encode(), expected.encode()):
                raise self.rejection("wrong token", access_key_id)
            if now >= expires_at:
                raise self.rejection("expired", access_key_id)
            return secret
        long_term = self.static.get(access_key_id)
        if long_term is None:
            raise self.rejection("unknown", access_key_id)
        if token is not None:  # a token marks an STS request, and this is no STS key
            raise self.rejection("token for a long-term key", access_key_id)
        return long_term

    def rejection(self, reason: str, access_key_id: str) -> Exception:
        """The service's error for a key refused for `reason`: "no token", "wrong token", "expired", "unknown" or
        "token for a long-term key"."""
        raise NotImplementedError

    def snapshot(self) -> Self:
        return type(self)(dict(self.static), dict(self.sts))


class ServedInThread:
    """start() binds (port 0: any free port) and serves in a daemon thread; stop() wakes what waits, shuts the
    server down and closes its kept-alive connections. A subclass makes its server (`_new_server`) and names itself
    (THREAD_NAME for the thread, DESCRIPTION for errors)."""

    THREAD_NAME = "stand-in"
    DESCRIPTION = "the stand-in"

    def __init__(self, host: str, port: int) -> None:
        self._address = (host, port)
        self._stopping = threading.Event()  # set while stopping: wakes handlers sleeping in a "slow" fault
        self._server: TrackingServer | None = None
        self._thread: threading.Thread | None = None

    def _new_server(self) -> TrackingServer:
        raise NotImplementedError

    def _wake(self) -> None:
        """Wake whatever else a handler may be waiting on (SMQ's long polls) as the stand-in stops."""

    def start(self) -> Self:
        if self._server is None:
            self._stopping.clear()
            self._server = self._new_server()
            # A short poll interval keeps stop() quick (it waits for the loop to notice); tests start many.
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, name=self.THREAD_NAME, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._stopping.set()
            self._wake()
            self._server.shutdown()
            self._server.server_close()
            self._server.close_connections()
            if self._thread is not None:
                self._thread.join()
            self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def bound(self) -> str:
        """host:port as bound."""
        if self._server is None:
            raise RuntimeError(f"{self.DESCRIPTION} is not started")
        return f"{self._address[0]}:{self._server.server_port}"

    @property
    def endpoint(self) -> str:
        """The base URL, http://127.0.0.1:<port>."""
        return f"http://{self.bound}"


@dataclass
class Fault:
    """An injected misbehaviour; `times` None lasts until cleared."""

    kind: str  # "fail", "slow" or "drop"
    times: int | None = 1
    status: int = 500  # a fail's
    code: str = "InternalError"  # a fail's
    seconds: float = 0.0
    operation: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be at least 1, or None for until cleared")
        if not 100 <= self.status <= 599 or self.seconds < 0:
            raise ValueError("status must be an HTTP status and seconds not negative")


class Recorded(Protocol):
    """A stand-in's record of one answered request (status 0: dropped without an answer): a dataclass."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    @property
    def operation(self) -> str: ...

    @property
    def status(self) -> int: ...


RecordT = TypeVar("RecordT", bound=Recorded)


class FaultyStandIn(ServedInThread, Generic[RecordT]):
    """A stand-in that records every request it answers and misbehaves on demand: `fail` (an error of the
    service's own), `slow` and `drop` (the connection closed without an answer), for any request or one operation
    (one of OPERATIONS), the next `times` of them or until cleared. Faults come first, as from a failing front end:
    `handle` calls `_front_end` before the request's headers, signature or resources are looked at.

    A subclass is one service: its OPERATIONS, ERROR (the ServiceError a `fail` raises), HANDLER (the StandInHandler
    that serves it over HTTP), `handle` (answer and record one API request), `body_refusal`, and its own control
    routes (`_control`). It passes its KeyRing and clock (epoch seconds) to __init__."""

    OPERATIONS: tuple[str, ...] = ()
    FAIL_STATUS, FAIL_CODE = 500, "InternalError"
    ERROR: ClassVar[type[ServiceError]] = ServiceError
    HANDLER: ClassVar[type[StandInHandler]]

    def __init__(self, host: str, port: int, keys: KeyRing, clock: Callable[[], float]) -> None:
        super().__init__(host, port)
        self._keys = keys
        self._clock = clock
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._records: list[RecordT] = []

    def _new_server(self) -> StandInServer:
        return StandInServer(self._address, self, self.HANDLER)

    def add_sts(self, access_key_id: str, secret: str, token: str, expires_at: float) -> None:
        """Accept STS credentials until `expires_at` (epoch seconds); requests must carry their security token."""
        with self._lock:
            self._keys.sts[access_key_id] = (secret, token, expires_at)

    def _key_ring(self) -> KeyRing:
        """The keys as they are now, to check a request with outside the lock."""
        with self._lock:
            return self._keys.snapshot()

    # --- what differs by service -----------------------------------------------------------------------------

    def handle(self, request: Any) -> Answer:
        """Answer one API request (of the HANDLER's REQUEST class) and record it."""
        raise NotImplementedError

    def body_refusal(self, too_large: bool, target: str) -> Answer:
        """The service's answer to a request (to `target`) whose body cannot be read: over the HANDLER's MAX_BODY
        (`too_large`) or of a bad length. The connection is closed after it."""
        raise NotImplementedError

    def is_control(self, request: WireRequest) -> bool:
        """Whether the request is for the control plane rather than the API."""
        return request.target.startswith(CONTROL_PREFIX)

    def _control(self, method: str, route: str, request: dict[str, Any]) -> Any:
        """What one of the stand-in's own control routes answers (as JSON, 200), or None for no such route."""
        return None

    def _control_error(self, error: ServiceError) -> Answer:
        """The control plane's answer when the service refuses what a control route asked (a bad name...)."""
        return json_answer(error.status, {"error": error.code, "message": error.message})

    # --- faults ----------------------------------------------------------------------------------------------

    def fail(
        self, times: int | None = 1, status: int | None = None, code: str | None = None, operation: str | None = None
    ) -> None:
        """Answer the next `times` requests (of `operation`, or any) with this error of the service's (by default
        FAIL_STATUS and FAIL_CODE), before anything else is looked at."""
        status, code = self.FAIL_STATUS if status is None else status, self.FAIL_CODE if code is None else code
        self.add_fault(Fault("fail", times, status=status, code=code, operation=operation))

    def slow(self, seconds: float, times: int | None = None, operation: str | None = None) -> None:
        """Wait `seconds` before answering the next `times` requests (None: until cleared)."""
        self.add_fault(Fault("slow", times, seconds=seconds, operation=operation))

    def drop(self, times: int | None = 1, operation: str | None = None) -> None:
        """Close the connection without any answer (before doing anything) for the next `times` requests."""
        self.add_fault(Fault("drop", times, operation=operation))

    def add_fault(self, fault: Fault) -> None:
        if fault.operation is not None and fault.operation not in self.OPERATIONS:
            raise ValueError(f"unknown operation {fault.operation!r}; one of {', '.join(self.OPERATIONS)}")
        with self._lock:
            self._faults.append(fault)

    def add_fault_json(self, fields: dict[str, Any]) -> None:
        """A fault as the control planes take it (the Fault's fields; a fail's status and code default to this
        stand-in's FAIL_STATUS and FAIL_CODE)."""
        defaults: dict[str, Any] = {"status": self.FAIL_STATUS, "code": self.FAIL_CODE}
        self.add_fault(Fault(**(defaults | fields)))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def faults(self) -> list[Fault]:
        with self._lock:
            return [Fault(**asdict(fault)) for fault in self._faults]

    def _front_end(self, op: str, dropped: RecordT) -> Answer | None:
        """The faults, first of all: wait out a matching slow fault; then, for a matching drop, record `dropped` and
        answer with nothing; for a matching fail, raise it as the service's ERROR. None: no fault answers this one."""
        slow, fault = self._take_faults(op)
        if slow is not None:
            self._stopping.wait(slow.seconds)
        if fault is not None and fault.kind == "drop":
            self._record(dropped)
            return Answer(0, {}, drop=True)
        if fault is not None:
            raise self.ERROR(fault.code, status=fault.status)
        return None

    def _take_faults(self, op: str) -> tuple[Fault | None, Fault | None]:
        """Consume the first matching slow fault and the first matching fail/drop fault."""
        taken: dict[str, Fault] = {}
        with self._lock:
            for fault in list(self._faults):
                group = "slow" if fault.kind == "slow" else "answer"
                if group in taken or fault.operation not in (None, op):
                    continue
                taken[group] = fault
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
        return taken.get("slow"), taken.get("answer")

    # --- records ---------------------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordT]:
        """Every request so far (control plane excluded), in the order they were answered."""
        with self._lock:
            return list(self._records)

    def count(self, operation: str | None = None, status: int | None = None) -> int:
        return sum(
            1
            for record in self.requests
            if (operation is None or record.operation == operation) and (status is None or record.status == status)
        )

    def clear_requests(self) -> None:
        with self._lock:
            self._records.clear()

    def _record(self, record: RecordT) -> None:
        with self._lock:
            self._records.append(record)

    # --- the control plane -----------------------------------------------------------------------------------

    def control(self, method: str, route: str, body: bytes) -> Answer:
        """One call to the control plane (`route`: the path after CONTROL_PREFIX), JSON in and out: a route every
        stand-in has (`_fault_and_record_route`) or one of its own (`_control`); 404 for any other, 400 for a body or
        fault that cannot be taken, `_control_error` for what the service refuses."""
        try:
            request = json.loads(body or b"{}")
            if not isinstance(request, dict):
                raise TypeError("the body must be a JSON object")
            payload = self._fault_and_record_route(method, route, request)
            if payload is None:
                payload = self._control(method, route, request)
        except ServiceError as error:
            return self._control_error(error)
        except (ValueError, TypeError, KeyError) as exc:  # json.JSONDecodeError is a ValueError too
            return json_answer(400, {"error": str(exc)})
        if payload is None:
            return json_answer(404, {"error": f"no control route {method} {CONTROL_PREFIX}{route}"})
        return json_answer(200, payload)

    def _fault_and_record_route(self, method: str, route: str, request: dict[str, Any]) -> Any:
        """The control routes every stand-in has, or None for another: POST, DELETE and GET `faults` (each answered
        with the faults left), DELETE `requests` (the same) and GET `requests` (the record)."""
        if (method, route) == ("POST", "faults"):
            self.add_fault_json(request)
        elif (method, route) == ("DELETE", "faults"):
            self.clear_faults()
        elif (method, route) == ("DELETE", "requests"):
            self.clear_requests()
        elif (method, route) == ("GET", "requests"):
            return [asdict(record) for record in self.requests]
        elif (method, route) != ("GET", "faults"):
            return None
        return self._faults_payload()

    def _faults_payload(self) -> dict[str, Any]:
        return {"faults": [asdict(fault) for fault in self.faults]}

    def control_lines(self, fault: dict[str, Any], inspect: str | None = None) -> list[str]:
        """A CLI banner's lines on the control plane: how to inject `fault`, how to clear the faults, and how to look
        at `inspect` (a route of the stand-in's own), if given."""
        faults = f"{self.endpoint}{CONTROL_PREFIX}faults"
        lines = [f"faults: curl -X POST {faults} -d '{json.dumps(fault)}'", f"        curl -X DELETE {faults}"]
        if inspect is not None:
            lines.append(f"inspect: curl {self.endpoint}{CONTROL_PREFIX}{inspect}")
        return lines


class StandInServer(TrackingServer):
    """A stand-in's server: its handler class, and the stand-in the handler answers for."""

    def __init__(
        self, address: tuple[str, int], stand_in: FaultyStandIn[Any], handler: type[BaseHTTPRequestHandler]
    ) -> None:
        super().__init__(address, handler)
        self.stand_in = stand_in


class BodyTooLarge(Exception):
    """A request body over the stand-in's MAX_BODY."""


class StandInHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive (the SDKs reuse their connections), the body read whole (Content-Length or chunked,
    at most MAX_BODY), absolute-form targets (through a proxy) taken by their path, and the control plane beside the
    API. A stand-in's handler is data: its SERVER_NAME, MAX_BODY, REQUEST (the WireRequest class its stand-in's
    `handle` takes) and the methods it serves (do_X = StandInHandler._dispatch; any other gets a 501). What a request
    is answered with is the stand-in's (`is_control`, `control`, `handle`, `body_refusal`)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    SERVER_NAME = "stand-in"
    MAX_BODY = 1 << 20
    REQUEST: type[WireRequest] = WireRequest
    server: StandInServer

    def version_string(self) -> str:
        return self.SERVER_NAME

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log is the record; stderr lines could carry request lines into CI logs

    def _dispatch(self) -> None:
        body = self._read_body()
        if body is None:
            return
        headers = {name.lower(): self.headers.get_all(name, []) for name in set(self.headers.keys())}
        target = self.path
        if "://" in target.partition("?")[0]:  # absolute-form, as sent through a proxy
            target = "/" + (target.split("/", 3) + [""])[3]
        request = self.REQUEST(self.command, target, headers, body)
        stand_in = self.server.stand_in
        if stand_in.is_control(request):
            self._send(stand_in.control(self.command, request.raw_path[len(CONTROL_PREFIX) :], body))
        else:
            self._send(stand_in.handle(request))

    def _read_body(self) -> bytes | None:
        try:
            if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
                return self._read_chunked()
            length = int(self.headers.get("content-length") or 0)
            if length < 0:
                raise ValueError(length)
            if length > self.MAX_BODY:
                raise BodyTooLarge
        except ValueError:
            too_large = False
        except BodyTooLarge:
            too_large = True
        else:
            return self.rfile.read(length)
        self.close_connection = True  # the rest of the stream cannot be trusted
        answer = self.server.stand_in.body_refusal(too_large, self.path)
        self._send(Answer(answer.status, answer.headers | {"Connection": "close"}, answer.body))
        return None

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            total += size
            if total > self.MAX_BODY:
                raise BodyTooLarge
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass  # trailers
        return b"".join(chunks)

    def _send(self, answer: Answer) -> None:
        if answer.drop:
            self.close_connection = True  # returning without writing closes the socket: no answer at all
            return
        self.send_response(answer.status)  # adds Date and Server
        # On HEAD the length is the resource's, as on GET; a 204 carries none.
        headers = {} if answer.status == 204 else {"Content-Length": str(len(answer.body))}
        for name, value in (headers | answer.headers).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)
