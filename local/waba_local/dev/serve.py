"""`make serve`: the HTTP function on localhost, as `sam local start-api` would run it, without Docker;
`make serve PLATFORM=fc`: as Function Compute's HTTP trigger would run it.

CAMS and the cloud are local stand-ins unless real settings are in the environment. Queued refreshes are drained by
the queue worker in a process of its own (--no-worker leaves them queued). More: docs/architecture.md#make-serve.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from waba_local.dev.apigw import body_as_text, http_event, load_handler
from waba_local.dev.fc_local import fc_invocation
from waba_local.dev.poller import LocalLambdaContext
from waba_local.stand_ins import launch as stand_ins
from waba_local.stand_ins.emulator import CONTROL_PREFIX, SEEDED_CUSTOMERS

REAL_CAMS = ("CAMS_ENDPOINT", "ALIBABA_CLOUD_ACCESS_KEY_ID", "CAMS_CREDENTIALS_SECRET")
# the local SQS queue as template.yaml declares the real one's redrive (maxReceiveCount 5), with a visibility timeout
# of the worker's timeout: a batch still running is never handed out again, and a failed record returns in a minute
VISIBILITY_TIMEOUT, MAX_RECEIVE_COUNT = 60, 5


class ApiGatewayHandler(BaseHTTPRequestHandler):
    """Every method reaches the function, as API Gateway's `$default` route and FC's HTTP trigger pass them; the
    function answers unknown routes and methods itself. A failure outside it is a 500 with the JSON error body, as
    the platforms answer a crashed invocation (never a dropped connection)."""

    api: Any = None
    timeout_ms = 20_000  # the template's and s.yaml's HTTP function timeout
    platform = "aws"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):  # do_GET, do_PUT, do_TRACE...: http.server's dispatch, for any method
            return self._invoke
        raise AttributeError(name)

    def _invoke(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0:
                raise ValueError(length)
        except ValueError:
            self._answer(_error(400, "InvalidParameter", "bad Content-Length"))
            return
        body = self.rfile.read(length) if length else None
        try:
            response = self._call(body)
        except Exception as error:  # noqa: BLE001 - what the platform does with a crashed invocation
            self.log_error("the function raised %s: %s", type(error).__name__, error)
            response = _error(500, "InternalError", "the function failed; its output says why")
        self._answer(response)

    def _call(self, body: bytes | None) -> dict[str, Any]:
        headers = dict(self.headers.items())
        if self.platform == "fc":
            text, encoded = body_as_text(body)
            event, context = fc_invocation(self.command, self.path, headers, text)
            if encoded:  # FC passes a body that is not text base64-encoded too
                event = json.dumps(json.loads(event) | {"isBase64Encoded": True}).encode()
            return dict(self.api.handler(event, context))
        event_v2 = http_event(self.command, self.path, headers, body)
        return dict(self.api.lambda_handler(event_v2, LocalLambdaContext(self.timeout_ms)))

    def _answer(self, response: dict[str, Any]) -> None:
        payload = (response.get("body") or "").encode()
        if response.get("isBase64Encoded"):
            payload = base64.b64decode(payload)
        self.send_response(int(response["statusCode"]))
        for name, value in (response.get("headers") or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


def _error(status: int, code: str, message: str) -> dict[str, Any]:
    body = {"Code": code, "Message": message, "RequestId": str(uuid.uuid4())}
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3000")))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--platform", choices=("aws", "fc"), default=os.environ.get("PLATFORM") or "aws")
    parser.add_argument(
        "--worker",
        action=argparse.BooleanOptionalAction,
        default=os.environ.get("SERVE_WORKER", "on").lower() not in ("off", "no", "0", "false"),
        help="drain the local refresh queue into the queue worker (default: on; `make serve SERVE_WORKER=off`)",
    )
    args = parser.parse_args()
    # EMF metric blocks are CloudWatch's, not a reader's: off here unless asked for
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    local = None
    local_cams, local_cloud = not any(os.environ.get(k) for k in REAL_CAMS), not os.environ.get("CACHE_BUCKET")
    fc = args.platform == "fc"
    if local_cams or local_cloud:
        local = stand_ins.start(
            visibility_timeout=VISIBILITY_TIMEOUT,
            max_receive_count=MAX_RECEIVE_COUNT,
            with_emulator=local_cams,
            with_fc=fc,
        )
        if fc:
            env = local.fc_environment(cams=local_cams)
            if not local_cloud:  # the user's own bucket: the real OSS endpoint, not the stand-in's
                env = {k: v for k, v in env.items() if k not in ("OSS_ENDPOINT", "CACHE_BUCKET")}
        else:
            env = local.environment(cams=local_cams, aws=local_cloud)
        for name, value in env.items():
            os.environ.setdefault(name, value)  # what the user set wins
    ApiGatewayHandler.api = load_handler("http_api")
    ApiGatewayHandler.platform = args.platform
    # one request at a time, as one Lambda instance serves them (Powertools keeps the current event per resolver)
    server = HTTPServer((args.host, args.port), ApiGatewayHandler)
    ours = local_cloud and local_queue(local, fc)
    drains = ours and args.worker
    print_banner(
        f"http://{args.host}:{server.server_port}",
        local,
        fc,
        local_cloud,
        ("on" if drains else "off") if ours else None,
    )
    worker = start_worker(args.platform) if drains else None
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if worker:
            stop_worker(worker)
        if local:
            local.stop()


def local_queue(local: stand_ins.StandIns | None, fc: bool) -> bool:
    """Whether the refresh queue is the stand-in's (not one the user set): the only one drained here."""
    if local is None:
        return False
    ours = local.smq.queue_url(stand_ins.FC_QUEUE) if fc and local.smq is not None else local.queue_url
    return os.environ.get("REFRESH_QUEUE_URL") == ours


def start_worker(platform: str) -> subprocess.Popen[bytes]:
    """The queue worker, another instance as on the platform, with the HTTP function's settings; its logs go where
    the HTTP function's go. It stops by itself if this process is killed."""
    command = [sys.executable, "-m", "waba_local.dev.drain", "--platform", platform, "--parent", str(os.getpid())]
    return subprocess.Popen(command, env=dict(os.environ))


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    worker.terminate()
    try:
        worker.wait(timeout=10)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


def print_banner(
    base: str, local: stand_ins.StandIns | None, fc: bool, local_cloud: bool, worker: str | None = None
) -> None:
    """Where it listens, what stands in for what, what drains the refresh queue (`worker`: "on", "off" or None
    when the queue is not the stand-in's), the README's four examples and the emulator's fault controls."""
    trigger = "an FC HTTP trigger" if fc else "API Gateway (HTTP API)"
    print(f"waba-lookup HTTP API on {base}, as {trigger} would call it  (Ctrl-C to stop)")
    if local and local_cloud and fc and local.oss is not None:
        print(f"  OSS: the local stand-in at {local.oss.endpoint} (bucket {local.bucket})")
        if local.tablestore is not None:
            print(f"  Tablestore: the local stand-in at {local.tablestore.endpoint} (the shared CAMS budget's table)")
        if local.smq is not None:
            print(f"  SMQ: the local stand-in at {local.smq.endpoint}: POST /waba/refresh queues refreshes there")
    elif local and local_cloud:
        print(f"  S3/SQS/DynamoDB: moto at {local.aws_endpoint} (shared CAMS budget in table {local.budget_table});")
        print("  POST /waba/refresh queues refreshes in SQS")
    if worker == "on":
        feeder = "the SMQ trigger (EventBridge)" if fc else "the SQS event source"
        print("  refreshes are drained by the queue worker: functions/queue_worker in a process of its own, fed as")
        print(f"  {feeder} feeds it; its logs come here too (SERVE_WORKER=off: no worker)")
    elif worker == "off":
        print("  nothing drains the refresh queue (--no-worker, SERVE_WORKER=off): queued refreshes stay queued")
    elif os.environ.get("REFRESH_QUEUE_URL"):
        print("  refreshes go to your REFRESH_QUEUE_URL: your deployed worker drains it, make serve does not")
    if not (local and local.emulator):
        set_ = ", ".join(k for k in REAL_CAMS if os.environ.get(k))
        print(f"  CAMS: REAL ({set_} set): every MISS calls production CAMS and counts against your account's")
        print(f"  10 calls a second. Unset {set_} to use the local emulator instead.")
    if local and local.emulator:
        space, (isv, _) = next((k, v) for k, v in SEEDED_CUSTOMERS.items() if k is not None)
        control = f"http://{local.emulator.endpoint}{CONTROL_PREFIX}"
        items = json.dumps({"Items": [{"CustSpaceId": space, "IsvCode": isv}]})
        print(f"  CAMS: the local emulator at {local.emulator.endpoint}; any id cs-… is a generated customer whose")
        print("  ISV code is isv-cs-… (X-Isv-Code: isv-cs-a1 for /waba/cs-a1)")
        print("  try:")
        print(f"    curl -i {base}/waba")
        print(f"    curl -i -H 'X-Isv-Code: {isv}' {base}/waba/{space}")
        print(f"    curl -i -H 'X-Isv-Code: {isv}' '{base}/waba/{space}?refresh=true'")
        if os.environ.get("REFRESH_QUEUE_URL"):
            print(f"    curl -i -H 'Content-Type: application/json' -d '{items}' {base}/waba/refresh")
        else:
            print("  (POST /waba/refresh needs REFRESH_QUEUE_URL)")
        behaviour = f"curl -s -X POST {control}behaviour -d"
        print("  faults (the emulator's control plane; CustSpaceId null is the account's own WABA):")
        print(f"""    {behaviour} '{{"CustSpaceId": null, "Behaviour": "error:System.LimitControl"}}'""")
        print("      then ?refresh=true answers 200 with X-Cache: STALE from a cached entry, or 429 with Retry-After;")
        print("      an entry younger than REFRESH_MIN_INTERVAL_SECONDS (60 s; start with a smaller value to see it")
        print(
            "      sooner) is a HIT whatever is asked: no caller can spend CAMS calls in a loop; after a throttle the"
        )
        print("      deployment backs off on purpose (its rate is cut, then grows back over tens of seconds)")
        print(f"""    {behaviour} '{{"CustSpaceId": "{space}", "Behaviour": "5xx", "Times": 3}}'""")
        print("      other behaviours: error:Ram.PermissionDeny (403), 500, garbage (502), slow:6 (504), drop, ok")
        print(f"    curl -s {control}calls      # every call CAMS saw")
        print(f"    curl -s -X POST {control}reset   # back to normal")
    print("Ready", flush=True)


if __name__ == "__main__":
    main()
