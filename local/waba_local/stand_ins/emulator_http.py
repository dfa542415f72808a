"""HTTP plumbing of the CAMS emulator: the threaded server, the request handler and the /_emulator/ control plane.

The control plane is unsigned so a demo or benchmark can steer an emulator running in another process; it is only
as private as the address the emulator listens on (127.0.0.1 by default).
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from waba_local.stand_ins.emulator_protocol import Answer, ApiRequest

if TYPE_CHECKING:
    from waba_local.stand_ins.emulator import CamsEmulator

CONTROL_PREFIX = "/_emulator/"
_MAX_BODY = 1 << 20  # CAMS requests here have an empty body; refuse to buffer anything large


class TrackingServer(ThreadingHTTPServer):
    """A threaded local server that can cut its kept-alive connections on stop, and keeps quiet about clients that
    gave up waiting. The CAMS emulator and the OSS, SMQ and Tablestore stand-ins all serve through it."""

    daemon_threads = True  # a handler still sleeping ("slow", a long poll) must not hold up stop()
    # The default backlog of 5 drops SYNs of a concurrent burst; the client then retries a second later, which
    # would smear a burst across flow-control windows.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that gave up waiting (a timeout test, a stopped benchmark) closes its end: not worth a traceback
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Cut kept-alive connections too: a stopped server must not keep answering an SDK's pooled sockets."""
        with self._open_lock:
            for connection in self._open:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed by the peer


class EmulatorServer(TrackingServer):
    def __init__(self, address: tuple[str, int], emulator: CamsEmulator) -> None:
        super().__init__(address, EmulatorHandler)
        self.emulator = emulator


class EmulatorHandler(BaseHTTPRequestHandler):
    # Keep-alive like the real gateway, so the SDK's pooled connections are reused as in production.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the body waits ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True
    server: EmulatorServer

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the call log is the record; per-request stderr lines would drown test and benchmark output

    def _dispatch(self) -> None:
        body = self._read_body()
        if body is None:
            return
        url = urlsplit(self.path)
        emulator = self.server.emulator
        if url.path.startswith(CONTROL_PREFIX):
            answer = control_plane(emulator, self.command, url.path[len(CONTROL_PREFIX) :], body)
        else:
            headers = {name.lower(): self.headers.get_all(name, []) for name in set(self.headers.keys())}
            query = parse_qsl(url.query, keep_blank_values=True)
            answer = emulator.handle(ApiRequest(self.command, url.path, query, headers, body))
        self._send(answer)

    def _read_body(self) -> bytes | None:
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            self._send(Answer.json(411, "LengthRequired", {"Error": "send Content-Length, not chunks"}), close=True)
            return None
        try:
            length = int(self.headers.get("content-length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY:
            self._send(Answer.json(400, "BadContentLength", {"Error": "bad or too large Content-Length"}), close=True)
            return None
        return self.rfile.read(length)

    def _send(self, answer: Answer, close: bool = False) -> None:
        if answer.drop:
            self.close_connection = True  # returning without writing closes the socket: the client sees no answer
            return
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        if answer.request_id:
            self.send_header("x-acs-request-id", answer.request_id)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(answer.body)


def control_plane(emulator: CamsEmulator, method: str, route: str, body: bytes) -> Answer:
    """POST behaviour, GET calls, POST reset."""
    if (method, route) == ("GET", "calls"):
        return Answer.json(200, "OK", [asdict(call) for call in emulator.calls])
    if (method, route) == ("POST", "reset"):
        emulator.reset()
        return Answer.json(200, "OK", {"Reset": True})
    if (method, route) == ("POST", "behaviour"):
        return _set_behaviour(emulator, body)
    return Answer.json(404, "NotFound", {"Error": f"no control route {method} {CONTROL_PREFIX}{route}"})


def _set_behaviour(emulator: CamsEmulator, body: bytes) -> Answer:
    try:
        request = json.loads(body or b"{}")
        if not isinstance(request, dict):
            raise TypeError("the body must be a JSON object")
        cust_space_id, behaviour, times = request.get("CustSpaceId"), request.get("Behaviour"), request.get("Times")
        if not isinstance(cust_space_id, str | None) or not isinstance(behaviour, str):
            raise TypeError("CustSpaceId must be a string or null and Behaviour a string")
        emulator.set_behaviour(cust_space_id, behaviour, times)
    except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError too
        return Answer.json(400, "InvalidBehaviour", {"Error": str(exc)})
    return Answer.json(200, "OK", {"CustSpaceId": cust_space_id, "Behaviour": behaviour, "Times": times})
