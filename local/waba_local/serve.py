"""`make serve`: the HTTP function on localhost, as `sam local start-api` would run it, without Docker;
`make serve PLATFORM=fc`: as Function Compute's HTTP trigger would run it.

On AWS each HTTP request becomes an API Gateway HTTP API (payload 2.0) event for `lambda_handler` in
functions/http_api/app.py; on FC, the FC HTTP trigger's event (JSON bytes) for `handler`, with FC's context and
variables. CAMS is the local emulator and S3/SQS/DynamoDB (the shared budget's table) a moto server, or OSS the
local OSS stand-in on FC, unless real settings are in the environment: CAMS_ENDPOINT, ALIBABA_CLOUD_ACCESS_KEY_ID or
CAMS_CREDENTIALS_SECRET for CAMS; CACHE_BUCKET for the cache.
"""

from __future__ import annotations

import argparse
import json
import os
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from waba_local import stand_ins
from waba_local.apigw import http_event, load_handler
from waba_local.emulator import SEEDED_CUSTOMERS
from waba_local.fc_local import fc_invocation
from waba_local.poller import LocalLambdaContext

REAL_CAMS = ("CAMS_ENDPOINT", "ALIBABA_CLOUD_ACCESS_KEY_ID", "CAMS_CREDENTIALS_SECRET")


class ApiGatewayHandler(BaseHTTPRequestHandler):
    api: Any = None
    timeout_ms = 10_000
    platform = "aws"

    def do_GET(self) -> None:
        self._invoke()

    def do_POST(self) -> None:
        self._invoke()

    def _invoke(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else None
        if self.platform == "fc":
            response = self.api.handler(*fc_invocation(self.command, self.path, dict(self.headers.items()), body))
        else:
            event = http_event(self.command, self.path, dict(self.headers.items()), body)
            response = self.api.lambda_handler(event, LocalLambdaContext(self.timeout_ms))
        payload = (response.get("body") or "").encode()
        self.send_response(response["statusCode"])
        for name, value in (response.get("headers") or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3000")))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--platform", choices=("aws", "fc"), default=os.environ.get("PLATFORM") or "aws")
    args = parser.parse_args()
    local = None
    local_cams, local_cloud = not any(os.environ.get(k) for k in REAL_CAMS), not os.environ.get("CACHE_BUCKET")
    fc = args.platform == "fc"
    if local_cams or local_cloud:
        local = stand_ins.start(with_emulator=local_cams, with_fc=fc)
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
    base = f"http://{args.host}:{args.port}"
    trigger = "an FC HTTP trigger" if fc else "API Gateway (HTTP API)"
    print(f"waba-lookup HTTP API on {base}, as {trigger} would call it  (Ctrl-C to stop)")
    if local and local.emulator:
        space, (isv, _) = next((k, v) for k, v in SEEDED_CUSTOMERS.items() if k is not None)
        print(f"  CAMS: local emulator at {local.emulator.endpoint}")
    if local and local_cloud and fc and local.oss is not None:
        print(f"  OSS: the local stand-in at {local.oss.endpoint} (bucket {local.bucket}); static CAMS shares")
    elif local and local_cloud:
        print(f"  S3/SQS/DynamoDB: moto at {local.aws_endpoint} (shared CAMS budget in table {local.budget_table})")
    if local and local.emulator:
        print("  try:")
        print(f"    curl -i {base}/waba")
        print(f"    curl -i -H 'X-Isv-Code: {isv}' {base}/waba/{space}")
        if fc:  # the FC queue (SMQ) and its worker are not there yet
            print("  (POST /waba/refresh needs REFRESH_QUEUE_URL: the FC queue is not built yet)")
        else:
            print(
                f"    curl -i -H 'Content-Type: application/json' -d '{json.dumps({'Items': [{'CustSpaceId': space, 'IsvCode': isv}]})}' {base}/waba/refresh"
            )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if local:
            local.stop()


if __name__ == "__main__":
    main()
