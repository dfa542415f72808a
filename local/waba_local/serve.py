"""`make serve`: the HTTP function on localhost, as `sam local start-api` would run it, without Docker.

Each HTTP request becomes an API Gateway HTTP API (payload 2.0) event for functions/http_api/app.py. CAMS is
the local emulator and S3/SQS/DynamoDB (the shared budget's table) a moto server, unless real settings are in the
environment: CAMS_ENDPOINT, ALIBABA_CLOUD_ACCESS_KEY_ID or CAMS_CREDENTIALS_SECRET for CAMS; CACHE_BUCKET for AWS.
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
from waba_local.poller import LocalLambdaContext

REAL_CAMS = ("CAMS_ENDPOINT", "ALIBABA_CLOUD_ACCESS_KEY_ID", "CAMS_CREDENTIALS_SECRET")


class ApiGatewayHandler(BaseHTTPRequestHandler):
    api: Any = None
    timeout_ms = 10_000

    def do_GET(self) -> None:
        self._invoke()

    def do_POST(self) -> None:
        self._invoke()

    def _invoke(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else None
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
    args = parser.parse_args()
    local = None
    local_cams, local_aws = not any(os.environ.get(k) for k in REAL_CAMS), not os.environ.get("CACHE_BUCKET")
    if local_cams or local_aws:
        local = stand_ins.start(with_emulator=local_cams)
        for name, value in local.environment(cams=local_cams, aws=local_aws).items():
            os.environ.setdefault(name, value)  # what the user set wins
    ApiGatewayHandler.api = load_handler("http_api")
    # one request at a time, as one Lambda instance serves them (Powertools keeps the current event per resolver)
    server = HTTPServer((args.host, args.port), ApiGatewayHandler)
    base = f"http://{args.host}:{args.port}"
    print(f"waba-lookup HTTP API on {base}  (Ctrl-C to stop)")
    if local and local.emulator:
        space, (isv, _) = next((k, v) for k, v in SEEDED_CUSTOMERS.items() if k is not None)
        print(f"  CAMS: local emulator at {local.emulator.endpoint}")
    if local and local_aws:
        print(f"  S3/SQS/DynamoDB: moto at {local.aws_endpoint} (shared CAMS budget in table {local.budget_table})")
    if local and local.emulator:
        print("  try:")
        print(f"    curl -i {base}/waba")
        print(f"    curl -i -H 'X-Isv-Code: {isv}' {base}/waba/{space}")
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
