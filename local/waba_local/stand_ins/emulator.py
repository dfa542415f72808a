"""A local, protocol-faithful emulator of Alibaba Cloud CAMS for the one action QueryChatappBindWaba (2020-06-06).

It checks ACS3-HMAC-SHA256 signatures, dates and nonces the way CAMS does, enforces the action's flow control
(10 calls per sliding second per account, counted at arrival), answers with CAMS's bodies and error codes, records
every call, and lets tests, the demo and benchmarks inject failures at run time (in process or over
/_emulator/). Point the official SDK at it with Config(endpoint=emulator.endpoint, protocol="http").

Run it on its own with `python -m waba_local.stand_ins.emulator --port 8787`.
"""

from __future__ import annotations

import argparse
import hmac
import time
from collections.abc import Callable

from waba_local.stand_ins.emulator_data import (
    GENERATED_CUST_SPACE_ID,
    SEEDED_CUSTOMERS,
    Customers,
    WabaDirectory,
    expected_isv_code,
    generated_waba,
)
from waba_local.stand_ins.emulator_http import CONTROL_PREFIX, EmulatorServer
from waba_local.stand_ins.emulator_protocol import (
    REPLAY_WINDOW_SECONDS,
    Answer,
    ApiRequest,
    CamsError,
    check_route,
    check_timestamp,
    claimed_access_key,
    new_request_id,
    success_body,
    verify_signature,
)
from waba_local.stand_ins.emulator_state import (
    ANY_CUSTOMER,
    Behaviours,
    Call,
    CallLog,
    FlowWindow,
    NonceCache,
    busiest_window,
)
from waba_local.stand_ins.stand_in_base import ServedInThread, serve_until_interrupted

__all__ = [
    "ANY_CUSTOMER",
    "CONTROL_PREFIX",
    "DEFAULT_ACCESS_KEY_ID",
    "DEFAULT_ACCESS_KEY_SECRET",
    "GENERATED_CUST_SPACE_ID",
    "SEEDED_CUSTOMERS",
    "Call",
    "CamsEmulator",
    "expected_isv_code",
    "generated_waba",
]

DEFAULT_ACCESS_KEY_ID = "LTAI5tLocalEmulatorKey"
DEFAULT_ACCESS_KEY_SECRET = "local-emulator-secret"
_GARBAGE = b"<html><body><h1>502 Bad Gateway</h1>upstream proxy error</body></html>"


class CamsEmulator(ServedInThread):
    """One CAMS account (all AccessKeys in `accounts` share its flow control) serving QueryChatappBindWaba.

    `customers` maps CustSpaceId -> (IsvCode, Data); the key None replaces the account's own WABA. Unseeded ids
    matching `cs-…` get a generated WABA, accepted with expected_isv_code(id). `clock` (monotonic seconds) times
    arrivals, flow control and nonces; `wall_clock` (epoch seconds) judges x-acs-date.
    """

    THREAD_NAME, DESCRIPTION = "cams-emulator", "the emulator"

    def __init__(
        self,
        accounts: dict[str, str] | None = None,
        customers: Customers | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.monotonic,
        qps_limit: int = 10,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(host, port)
        self._accounts = {DEFAULT_ACCESS_KEY_ID: DEFAULT_ACCESS_KEY_SECRET} if accounts is None else dict(accounts)
        self._sts: dict[str, tuple[str, float]] = {}  # STS AccessKeyId -> (security token, expiry, epoch seconds)
        self._directory = WabaDirectory(customers)
        self._clock, self._wall_clock = clock, wall_clock
        self._flow = FlowWindow(qps_limit)
        self._nonces = NonceCache(REPLAY_WINDOW_SECONDS)
        self._behaviours = Behaviours()
        self._log = CallLog()

    def _new_server(self) -> EmulatorServer:
        return EmulatorServer(self._address, self)

    @property
    def endpoint(self) -> str:
        """The bound host and port, "host:port", for the SDK's Config(endpoint=...)."""
        return self.bound

    # --- behaviours and records ------------------------------------------------------------------------------

    def set_behaviour(self, cust_space_id: str | None, behaviour: str, times: int | None = None) -> None:
        """Answer calls for this CustSpaceId (None: own account, ANY_CUSTOMER: default) this way; `times`: next N only.

        behaviour: "ok", "error:<documented code>", "5xx", "500", "slow:<seconds>", "garbage" or "drop".
        """
        self._behaviours.set(cust_space_id, behaviour, times)

    def clear_behaviours(self) -> None:
        self._behaviours.clear()

    @property
    def calls(self) -> list[Call]:
        """Every API call so far (control-plane requests excluded), in the order they were answered."""
        return self._log.snapshot()

    def max_calls_in_window(self, window: float = 1.0, accepted_only: bool = False) -> int:
        """The most calls that arrived within any sliding `window` seconds; accepted_only: answered Code OK only."""
        return busiest_window([c.arrived_at for c in self.calls if c.accepted or not accepted_only], window)

    def count(self, code: str | None = None, cust_space_id: str | None = None) -> int:
        """How many calls were answered with this code and/or for this CustSpaceId (None: any)."""
        return sum(
            1
            for call in self.calls
            if (code is None or call.code == code) and (cust_space_id is None or call.cust_space_id == cust_space_id)
        )

    def reset(self) -> None:
        """Forget calls, nonces, the flow-control window and behaviours."""
        self._log.clear()
        self._nonces.clear()
        self._flow.clear()
        self._behaviours.clear()

    # --- the API ---------------------------------------------------------------------------------------------

    def handle(self, request: ApiRequest) -> Answer:
        """Answer one QueryChatappBindWaba request and record it."""
        arrived_at = self._clock()
        request_id = new_request_id()
        cust_space_id = request.param("CustSpaceId") or None
        try:
            self._authenticate(request, arrived_at)
            if not self._flow.admit(arrived_at):
                raise CamsError("System.LimitControl")
            answer = self._answer(request, cust_space_id, request_id)
        except CamsError as error:
            answer = Answer.error(error, request_id)
        call = Call(arrived_at, self._clock(), claimed_access_key(request), cust_space_id, answer.status, answer.code)
        self._log.record(call)
        return answer

    def add_sts(self, access_key_id: str, secret: str, token: str, expires_at: float) -> None:
        """Accept STS credentials (as a function role's) on this account until `expires_at` (epoch seconds)."""
        self._accounts[access_key_id] = secret
        self._sts[access_key_id] = (token, expires_at)

    def _authenticate(self, request: ApiRequest, arrived_at: float) -> None:
        check_route(request)
        access_key_id = verify_signature(request, self._accounts)
        check_timestamp(request, self._wall_clock())
        if access_key_id in self._sts:
            token, expires_at = self._sts[access_key_id]
            if not hmac.compare_digest(request.header("x-acs-security-token") or "", token):
                raise CamsError("InvalidSecurityToken.MismatchWithAccessKey")
            if self._wall_clock() >= expires_at:
                raise CamsError("InvalidSecurityToken.Expired")
        # Claimed only once the signature holds, so forged requests cannot burn a legitimate caller's nonce.
        if not self._nonces.claim(request.header("x-acs-signature-nonce") or "", arrived_at):
            raise CamsError("SignatureNonceUsed")

    def _answer(self, request: ApiRequest, cust_space_id: str | None, request_id: str) -> Answer:
        behaviour = self._behaviours.take(cust_space_id)
        if behaviour.kind == "error":
            raise CamsError(behaviour.code)
        if behaviour.kind in ("5xx", "500"):
            raise CamsError("ServiceUnavailable" if behaviour.kind == "5xx" else "InternalError")
        if behaviour.kind == "garbage":
            return Answer(200, "Garbage", _GARBAGE, "text/html", request_id)
        if behaviour.kind == "drop":
            return Answer(0, "Dropped", drop=True)
        if behaviour.kind == "slow":
            time.sleep(behaviour.seconds)
        data = self._directory.lookup(cust_space_id, request.param("IsvCode"))
        return Answer.json(200, "OK", success_body(data, request_id), request_id)


def main(argv: list[str] | None = None) -> None:
    """CLI: serve until Ctrl-C, printing what the SDK needs to reach the emulator."""
    parser = argparse.ArgumentParser(
        prog="python -m waba_local.stand_ins.emulator", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8787, help="port to bind, 0 for any free port (default 8787)")
    parser.add_argument("--qps-limit", type=int, default=10, help="flow-control limit per sliding second")
    args = parser.parse_args(argv)
    with CamsEmulator(host=args.host, port=args.port, qps_limit=args.qps_limit) as emulator:
        _print_banner(emulator)
        serve_until_interrupted([])


def _print_banner(emulator: CamsEmulator) -> None:
    lines = [
        f"CAMS emulator (QueryChatappBindWaba) listening on http://{emulator.endpoint}",
        f"CAMS_ENDPOINT={emulator.endpoint}",
        "CAMS_PROTOCOL=http",
        f"ALIBABA_CLOUD_ACCESS_KEY_ID={DEFAULT_ACCESS_KEY_ID}",
        f"ALIBABA_CLOUD_ACCESS_KEY_SECRET={DEFAULT_ACCESS_KEY_SECRET}",
        f"control plane: http://{emulator.endpoint}{CONTROL_PREFIX}{{behaviour,calls,reset}}",
    ]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
