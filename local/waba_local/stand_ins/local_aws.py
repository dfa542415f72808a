"""moto's server, one request at a time: the local AWS (S3, SQS, DynamoDB) behind the stand-ins.

Run it on its own with `python -m waba_local.stand_ins.local_aws --port 5000`.
Why one request at a time: docs/stand-ins.md#moto.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

REQUESTS_PATH = "/_stand_in/requests"  # GET: requests served so far, per service and per operation
SLOW_PATH = "/_stand_in/slow"  # POST ?seconds=&service=&method=: the functions' requests of that kind wait first
FAIL_PATH = "/_stand_in/fail"  # POST ?status=&code=&service=&method=&times=: the functions' next requests fail so
_SERVICE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")
WsgiApp = Callable[[dict[str, Any], Any], Iterable[bytes]]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class SerialMotoApp:
    """moto's WSGI app answering one request at a time, counting requests per service ("dynamodb") and
    operation ("dynamodb:GetItem", when the request names one in X-Amz-Target).

    It can be slow and fail, as moto cannot: `slow` makes requests of one service and method wait before they are
    answered (outside the lock, so others go on), `fail` answers the next ones with an error of S3's. Both touch the
    functions' requests, not boto3's: a test's own boto3 client (its User-Agent says Boto3) reads the bucket at full
    speed to check what the functions left there."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app
        self.requests: Counter[str] = Counter()
        self.slowness: dict[tuple[str, str], float] = {}  # (service, method) -> seconds
        self.failures: dict[tuple[str, str], list[tuple[int, str]]] = {}  # (service, method) -> (status, code)s
        self._lock = threading.Lock()

    def slow(self, seconds: float, service: str = "s3", method: str = "GET") -> None:
        """From now on, the functions' `method` requests to `service` wait `seconds` first (0: no longer)."""
        self.slowness[(service, method.upper())] = seconds

    def fail(self, status: int, code: str, service: str = "s3", method: str = "GET", times: int = 1) -> None:
        """Answer the functions' next `times` `method` requests to `service` with `status` and an XML error `code`."""
        self.failures.setdefault((service, method.upper()), []).extend([(status, code)] * times)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == REQUESTS_PATH:
            body = json.dumps(dict(self.requests)).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        if environ.get("PATH_INFO") == SLOW_PATH:
            query = dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", "")))
            self.slow(float(query["seconds"]), query.get("service", "s3"), query.get("method", "GET"))
            start_response("204 No Content", [])
            return []
        if environ.get("PATH_INFO") == FAIL_PATH:
            query = dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", "")))
            service, method, times = query.get("service", "s3"), query.get("method", "GET"), int(query.get("times", 1))
            self.fail(int(query["status"]), query["code"], service, method, times)
            start_response("204 No Content", [])
            return []
        if environ.get("PATH_INFO") == "/moto-api/reset":
            self.slowness.clear()  # a reset starts from a quick, empty moto
            self.failures.clear()
        elif "Boto3/" not in environ.get("HTTP_USER_AGENT", ""):
            kind = (_service(environ), environ.get("REQUEST_METHOD", ""))
            time.sleep(self.slowness.get(kind, 0))
            if self.failures.get(kind):
                return _error(*self.failures[kind].pop(0), start_response)
        with self._lock:
            self._count(environ)
            answer = self.app(environ, start_response)
            try:  # the body too is built under the lock: a lazy one may still read moto's state
                return [b"".join(answer)]
            finally:
                getattr(answer, "close", lambda: None)()

    def _count(self, environ: dict[str, Any]) -> None:
        service = _service(environ)
        self.requests[service] += 1
        if target := environ.get("HTTP_X_AMZ_TARGET"):
            self.requests[f"{service}:{target.rpartition('.')[2]}"] += 1


def _error(status: int, code: str, start_response: Any) -> Iterable[bytes]:
    body = f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>injected</Message></Error>'
    headers = [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))]
    if 300 <= status < 400:
        headers.append(("Location", "http://127.0.0.1:9/elsewhere"))
    start_response(f"{status} {code}", headers)
    return [body.encode()]


def _service(environ: dict[str, Any]) -> str:
    """The service a request was signed for ("s3", "dynamodb"), or "unsigned"."""
    signed = _SERVICE.search(environ.get("HTTP_AUTHORIZATION", ""))
    return signed.group(1) if signed else "unsigned"


def serial_moto_server(port: int, host: str = "127.0.0.1") -> Any:
    """A werkzeug server (a thread per connection) in front of SerialMotoApp; call serve_forever()."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import ThreadedWSGIServer

    class Server(ThreadedWSGIServer):
        # werkzeug's backlog of 128 drops the SYNs of a larger burst (the benchmark's 200 concurrent cache hits);
        # the client then waits out its 1 s connect timeout and a hit turns into a miss
        request_queue_size = 1024

    app = SerialMotoApp(DomainDispatcherApplication(create_backend_app))
    return Server(host, port, app, MotoRequestHandler)


class LocalAws:
    """The serialised moto server, in a thread of this process or in a process of its own."""

    def __init__(self, own_process: bool = False, environ: dict[str, str] | None = None) -> None:
        """`environ`: variables added to the own process's environment, e.g. moto's INITIAL_NO_AUTH_ACTION_COUNT."""
        self.own_process = own_process
        self.environ = environ or {}
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> LocalAws:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request otherwise
        if self.own_process:
            command = [
                sys.executable,
                "-m",
                "waba_local.stand_ins.local_aws",
                "--port",
                str(self.port),
                "--with-parent",
            ]
            self._process = subprocess.Popen(command, env=os.environ | self.environ)
            self._wait_until_listening()
        else:
            self._server = serial_moto_server(self.port)
            self._thread = threading.Thread(target=self._server.serve_forever, name="moto", daemon=True)
            self._thread.start()
        # moto's backends live in the process, not the server: start from empty even after an earlier stand-in
        self.reset()
        return self

    def reset(self) -> None:
        """Empty every backend (buckets, queues, tables), as a fresh moto would be."""
        self._post("/moto-api/reset")

    def slow(self, seconds: float, service: str = "s3", method: str = "GET") -> None:
        """Make the functions' `method` requests to `service` wait `seconds` first (0 to stop); see SerialMotoApp."""
        query = urllib.parse.urlencode({"seconds": seconds, "service": service, "method": method})
        self._post(f"{SLOW_PATH}?{query}")

    def fail(self, status: int, code: str, service: str = "s3", method: str = "GET", times: int = 1) -> None:
        """Answer the functions' next `times` `method` requests to `service` with an error; see SerialMotoApp."""
        query = {"status": status, "code": code, "service": service, "method": method, "times": times}
        self._post(f"{FAIL_PATH}?{urllib.parse.urlencode(query)}")

    def requests(self) -> Counter[str]:
        """Requests served so far, per service and operation (see SerialMotoApp)."""
        with urllib.request.urlopen(self.endpoint + REQUESTS_PATH, timeout=10) as answer:
            return Counter(json.load(answer))

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._server.server_close()
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
        self._server = self._thread = self._process = None

    def _post(self, path: str) -> None:
        urllib.request.urlopen(urllib.request.Request(self.endpoint + path, method="POST"), timeout=10).close()

    def _wait_until_listening(self, timeout: float = 30.0) -> None:
        give_up = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > give_up or (self._process and self._process.poll() is not None):
                    raise RuntimeError(f"moto's server did not start on port {self.port}") from None
                time.sleep(0.05)


def _exit_with_parent(parent: int) -> None:
    """A benchmark that crashed must not leave its moto server behind."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def main() -> None:
    """CLI: moto's server, serialised, until stopped."""
    parser = argparse.ArgumentParser(prog="python -m waba_local.stand_ins.local_aws", description=main.__doc__)
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--with-parent", action="store_true", help="stop when the process that started it ends")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = serial_moto_server(args.port, args.host)
    if args.with_parent:
        threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
