"""The fault matrix (issue 13): one test over every fault x path, on AWS and on Function Compute where the fault
exists there, at the deployed shares.

- faults: CAMS slow (past CAMS_TIMEOUT_MS), 5xx, garbage, a dropped connection, throttled (System.LimitControl),
  rejected credentials (SignatureDoesNotMatch; on FC also the role's STS token expired, as CAMS sees it); the cache
  store unreachable or slow (past its read timeout: the OSS stand-in's fault, moto's server's `slow`); the queue unreachable (SQS) or
  failing (SMQ's BatchSendMessage); the secret unreadable (AWS only); the shared budget's store unreachable.
- paths: a hit, a miss, a miss with a stale entry (CACHE_TTL_SECONDS=0 after a first good read), a bulk refresh
  (POST /waba/refresh), a worker batch of one record (SQS event to `lambda_handler`, CloudEvents to `handler`).
- budgets: the HTTP function's paths run at the deployed static share ("static": CAMS_QPS_BUDGET=5 over
  CAMS_MAX_INSTANCES=5, 1 call/s per instance, so a retry cannot always get a slot); the worker runs on the deployed
  shared budget ("shared": DynamoDB or Tablestore), and so does every path under a fault of the budget's store.

Each cell: the fault appears on a fresh instance (after the first good read where the path needs one); then the
exact status and error Code (or 200 and X-Cache), Retry-After on 429/503 only, X-Cache on 200 only, the metric on
AWS (the EMF Powertools prints) and the log line on both (FC has no metrics), and where each record went: a worker's
record is cached, returned (batchItemFailures; re-sent with its attempt count on FC) or the invocation fails (the
platform delivers the batch again), exactly one of them; a bulk refresh is 202 with what was and was not queued
matching the queue, or an error saying none was queued and none is.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from http_api import app as http_app
from queue_worker import app as worker_app

from tests.support import EVENTS, REGION, AwsStandIn, FakeLambdaContext, OssCache, SmqQueues, load_event
from waba_local.dev.fc_local import FunctionMeta, LocalFcContext
from waba_local.stand_ins.emulator import CamsEmulator
from waba_local.stand_ins.tablestore_stand_in import TablestoreStandIn
from waba_lookup.compose import get_refresh_queue
from waba_lookup.errors import ConfigurationError, WabaLookupError
from waba_lookup.lookup import get_lookup
from waba_lookup.settings import get_settings

SUB, ISV = "cs-acme-001", "isv-cs-acme-001"  # the customer of events/*-sub.json, sqs-single.json, fc-smq-single.json
ITEMS = [{"CustSpaceId": SUB, "IsvCode": ISV}, {}]
SECRET = "waba-fault-matrix/cams-key"
STS = ("STS.fault-matrix", "sts-secret-fm", "sts-token-fm")
NOWHERE = "http://127.0.0.1:9"  # nothing listens there: connections are refused at once
CAMS_REQUEST_ID = re.compile(r"[0-9A-F]{8}(-[0-9A-F]{4}){3}-[0-9A-F]{12}")
PATHS = ("hit", "miss", "stale", "bulk", "worker")


@dataclass(frozen=True)
class Signal:
    """How a fault shows: the metric (AWS) and the log line (both) that appear on the paths that meet the fault, and
    on no other."""

    metric: str  # "Name" or "Name:Code" (CamsErrors carries CAMS's code as a dimension)
    log: str
    met_on: tuple[str, ...]
    metric_on: tuple[str, ...] | None = None  # where the metric is counted, if not wherever the fault is met


@dataclass(frozen=True)
class Fault:
    """A fault, what each path answers under it, and its signal."""

    name: str
    platforms: tuple[str, ...]
    # one answer per path of PATHS: hit, miss, stale, bulk, and the worker's "cached", "returned", "re-sent" or
    # "raised <exception>": where the record went
    answers: tuple[str, str, str, str, str]
    signal: Signal
    fc_worker: str | None = None  # the FC worker's outcome, where it differs (a batch there fails whole)
    worker_seconds: int = 60  # the worker invocation's timeout
    cams_request_id: bool = False  # a failed read carries the RequestId CAMS answered with
    needs_store: bool = False  # only with the shared budget

    def expected(self, path: str, platform: str) -> str:
        if path == "worker" and platform == "fc" and self.fc_worker:
            return self.fc_worker
        return self.answers[PATHS.index(path)]


def cams_fault(
    name: str, status_code: str, code: str, request_id: bool, platforms: tuple[str, ...] = ("aws", "fc")
) -> Fault:
    """CAMS failing: a hit never asks it, a read without a stale entry fails, a stale entry is served, a bulk
    refresh spends nothing, the worker returns the record to be tried again."""
    return Fault(
        name,
        platforms,
        ("200 HIT", f"{status_code} {code}", "200 STALE", "202", "returned"),
        Signal(f"CamsErrors:{code}", "CAMS attempt failed", met_on=("miss", "stale", "worker")),
        cams_request_id=request_id,
    )


def store_fault(name: str, platforms: tuple[str, ...], worker: str) -> Fault:
    """The cache store failing: never fails a read (CAMS answers it); the worker's refresh is only done once its
    entry is written."""
    return Fault(
        name,
        platforms,
        ("200 MISS", "200 MISS", "200 MISS", "202", worker),
        Signal("CacheFailures", "cache read failed", met_on=("hit", "miss", "stale", "worker")),
    )


FAULTS = {
    fault.name: fault
    for fault in (
        cams_fault("cams-slow", "504", "UpstreamTimeout", request_id=False),
        cams_fault("cams-5xx", "502", "ServiceUnavailable", request_id=True),
        cams_fault("cams-garbage", "502", "UpstreamUnparseable", request_id=False),
        cams_fault("cams-drop", "502", "UpstreamUnreachable", request_id=False),
        cams_fault("cams-throttled", "429", "System.LimitControl", request_id=True),
        cams_fault("cams-rejects-key", "502", "SignatureDoesNotMatch", request_id=True),
        cams_fault("cams-sts-expired", "502", "InvalidSecurityToken.Expired", request_id=True, platforms=("fc",)),
        store_fault("store-unreachable", ("aws", "fc"), worker="returned"),
        store_fault("store-slow", ("aws", "fc"), worker="cached"),  # the read times out; the write is quick
        Fault(
            "queue-unreachable",
            ("aws", "fc"),
            ("200 HIT", "200 MISS", "200 MISS", "502 QueueUnavailable", "returned"),
            Signal("Http502", "sending a batch of refreshes failed", met_on=("bulk", "worker"), metric_on=("bulk",)),
            # a record left for want of time must go back through the queue: on AWS it stays in batchItemFailures;
            # on FC, where the batch fails whole, the invocation fails and the trigger delivers the batch again
            fc_worker="raised UpstreamFailed QueueUnavailable",
            worker_seconds=6,  # too little for a CAMS call after the margins: the record is not attempted
        ),
        Fault(
            "secret-unreadable",
            ("aws",),
            # a hit needs no credentials; a stale entry is not served: this is not one of the failures it covers, the
            # deployment is broken
            ("200 HIT", "500 ConfigurationError", "500 ConfigurationError", "202", "raised ConfigurationError"),
            Signal("ConfigurationErrors", "configuration error", met_on=("miss", "stale", "worker")),
        ),
        Fault(
            "budget-unreachable",
            ("aws", "fc"),
            # the worker fails closed: no CAMS call; the record is sent to the queue again, seen 10 s later
            ("200 HIT", "503 BudgetUnavailable", "200 STALE", "202", "re-sent"),
            Signal("BudgetStoreUnavailable", "shared CAMS budget unreachable", met_on=("miss", "stale", "worker")),
            fc_worker="returned",  # re-sent with a delay, its attempts unchanged
            needs_store=True,
        ),
    )
}
CAMS_BEHAVIOURS = {
    "cams-slow": "slow:1.5",  # CAMS_TIMEOUT_MS is 1000
    "cams-5xx": "5xx",
    "cams-garbage": "garbage",
    "cams-drop": "drop",
    "cams-throttled": "error:System.LimitControl",
    "cams-rejects-key": "error:SignatureDoesNotMatch",
}

# Defects the matrix found, both fixed since: a slow cache store spent a read's permit-wait bound (429 instead of a
# MISS; the bound now starts after the cache read), and the HTTP function counted no configuration error (it counts
# ConfigurationErrors now). Cells expected to fail until a fix would be listed here, strictly.
XFAILS: dict[tuple[str, str, str, str], str] = {}


def budgets(fault: Fault, path: str) -> tuple[str, ...]:
    """The budget a cell runs on: the HTTP function's paths at the deployed static share (1 call/s: the retry that
    cannot get a slot), the worker on the shared budget as deployed, and the budget store's faults on it only."""
    return ("shared",) if fault.needs_store or path == "worker" else ("static",)


def cells() -> list[Any]:
    params = []
    for fault in FAULTS.values():
        for platform in ("aws", "fc"):
            for path in PATHS:
                for budget in budgets(fault, path):
                    marks: list[Any] = []
                    if platform not in fault.platforms:
                        continue  # the fault does not exist there
                    reason = XFAILS.get((platform, budget, fault.name, path))
                    if reason:
                        marks.append(pytest.mark.xfail(strict=True, reason=reason))
                    cell_id = f"{platform}-{budget}-{fault.name}-{path}"
                    params.append(pytest.param(platform, budget, fault.name, path, id=cell_id, marks=marks))
    return params


@dataclass
class Stack:
    """One platform's two functions with their stand-ins."""

    platform: str
    cams: CamsEmulator
    monkeypatch: pytest.MonkeyPatch
    aws: AwsStandIn | None = None
    oss: OssCache | None = None
    smq: SmqQueues | None = None
    tablestore: TablestoreStandIn | None = None
    secrets: Any = None  # Secrets Manager (moto), for the secret's faults
    fails_closed: bool = False  # the budget's store is failing: the worker postpones rather than fails

    def http(self, case: str, **overrides: Any) -> dict[str, Any]:
        response: dict[str, Any]
        if self.platform == "aws":
            response = http_app.lambda_handler(load_event(f"http-v2-{case}", **overrides), FakeLambdaContext())
        else:
            event = json.dumps(load_event(f"fc-http-{case}", **overrides)).encode()
            response = http_app.handler(event, LocalFcContext())
        return response

    def cached(self) -> list[dict[str, Any]]:
        """The cache entries of SUB (read from the store directly, whatever the functions' endpoints say)."""
        store = self.aws if self.aws is not None else self.oss
        assert store is not None
        return [entry for entry in store.cache_objects().values() if entry["CustSpaceId"] == SUB]

    def queued(self, which: str = "queue") -> list[Any]:
        """The bodies in the refresh queue (or its dead-letter queue), parsed; SQS's are received and deleted."""
        if self.smq is not None:
            return [json.loads(body) for body in self.smq.bodies(which)]
        assert self.aws is not None
        url = self.aws.queue_url if which == "queue" else self.aws.dlq_url
        received, sqs = [], self.aws.sqs  # the fixture's client: moto's, whatever AWS_ENDPOINT_URL_SQS says
        while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            received += [json.loads(m["Body"]) for m in batch]
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)]
            sqs.delete_message_batch(QueueUrl=url, Entries=entries)
        return received

    def delayed(self) -> int:
        """SQS messages sent with a delay that has not passed yet (a receive does not see them)."""
        assert self.aws is not None
        names = ["ApproximateNumberOfMessagesDelayed"]
        return int(
            self.aws.sqs.get_queue_attributes(QueueUrl=self.aws.queue_url, AttributeNames=names)["Attributes"][names[0]]
        )

    def worker_batch(self, seconds: int) -> str:
        """Send one record through a worker with `seconds` to run; where the record went, which must be exactly one
        place: cached, returned (batchItemFailures; re-sent with its attempt count on FC) or the invocation raised
        (the platform delivers the whole batch again)."""
        places: list[str] = []
        try:
            if self.platform == "aws":
                event = load_event("sqs-single")
                response = worker_app.lambda_handler(event, FakeLambdaContext(timeout_ms=seconds * 1000))
                failed = [f["itemIdentifier"] for f in response["batchItemFailures"]]
                assert failed in ([], [event["Records"][0]["messageId"]])
                places += ["returned"] * len(failed) + ["re-sent"] * (len(self.queued()) + self.delayed())
            else:
                raw = (EVENTS / "fc-smq-single.json").read_bytes()
                answer = worker_app.handler(raw, LocalFcContext(function=FunctionMeta(timeout=seconds)))
                resent = self.queued()
                assert answer == {"received": 1, "resent": len(resent), "deadLettered": len(self.queued("dlq"))}
                attempts = 0 if self.fails_closed else 1  # postponed, not failed, when no call could be made
                assert resent in ([], [{"CustSpaceId": SUB, "IsvCode": ISV, "Attempts": attempts}])
                places += ["returned"] * len(resent)
        except ConfigurationError:
            places.append("raised ConfigurationError")
        except WabaLookupError as error:
            places.append(f"raised {type(error).__name__} {error.code}")
        places += ["cached"] * len(self.cached()) + ["dead-lettered"] * len(self.queued("dlq"))
        assert len(places) == 1, f"the record must be in exactly one place, not {places}"
        return places[0]


@pytest.fixture
def stack_for(request: pytest.FixtureRequest, cams_env: CamsEmulator, monkeypatch: pytest.MonkeyPatch) -> Any:
    def build(platform: str, budget: str) -> Stack:
        if platform == "aws":
            aws: AwsStandIn = request.getfixturevalue("aws")
            stack = Stack("aws", cams_env, monkeypatch, aws=aws)
            if budget == "static":
                monkeypatch.delenv("CAMS_BUDGET_TABLE")
        else:
            oss = request.getfixturevalue("oss")  # before Tablestore's: the FC variables, then the budget's
            tablestore = request.getfixturevalue("tablestore") if budget == "shared" else None
            stack = Stack("fc", cams_env, monkeypatch, oss=oss, smq=request.getfixturevalue("smq"))
            stack.tablestore = tablestore
        if budget == "static":  # 5 HTTP instances sharing 5 calls/s, as deployed without a budget table
            monkeypatch.setenv("CAMS_QPS_BUDGET", "5")
            monkeypatch.setenv("CAMS_MAX_INSTANCES", "5")
        return stack

    return build


def prepare(stack: Stack, fault: str, emulator_credentials: tuple[str, str]) -> None:
    """What the fault needs in place before the first good read: its credentials' source."""
    if fault == "secret-unreadable":
        key_id, secret = emulator_credentials
        stack.secrets = boto3.client("secretsmanager", region_name=REGION)
        stack.secrets.create_secret(
            Name=SECRET, SecretString=json.dumps({"AccessKeyId": key_id, "AccessKeySecret": secret})
        )
        stack.monkeypatch.setenv("CAMS_CREDENTIALS_SECRET", SECRET)
        parameters.clear_caches()
    elif fault == "cams-sts-expired":  # the function role's STS credentials, in the variables FC sets
        for name, value in zip(("ID", "SECRET"), STS[:2], strict=True):
            stack.monkeypatch.setenv(f"ALIBABA_CLOUD_ACCESS_KEY_{name}", value)
        stack.monkeypatch.setenv("ALIBABA_CLOUD_SECURITY_TOKEN", STS[2])
        services = [stack.cams, stack.oss and stack.oss.stand_in, stack.smq and stack.smq.stand_in, stack.tablestore]
        for service in services:
            if service is not None:
                service.add_sts(*STS, expires_at=time.time() + 3600)


def inject(stack: Stack, fault: str) -> None:
    """Make the fault happen, then start a new instance (settings, clients and budget built again)."""
    mp = stack.monkeypatch
    if fault in CAMS_BEHAVIOURS:
        stack.cams.set_behaviour(SUB, CAMS_BEHAVIOURS[fault])
    elif fault == "cams-sts-expired":  # CAMS alone sees it expired: its rejection, not OSS's or SMQ's, is tested
        stack.cams.add_sts(*STS, expires_at=time.time() - 1)
    elif fault == "store-unreachable":
        mp.setenv("AWS_ENDPOINT_URL_S3" if stack.platform == "aws" else "OSS_ENDPOINT", NOWHERE)
    elif fault == "store-slow":  # reads take longer than the store's 2 s read timeout
        if stack.oss is not None:
            stack.oss.stand_in.slow(2.5, operation="GetObject")
        else:
            assert stack.aws is not None and stack.aws.server is not None
            stack.aws.server.slow(2.5, service="s3", method="GET")
    elif fault == "queue-unreachable":
        if stack.smq is not None:
            stack.smq.stand_in.fail(times=None, status=503, code="ServiceUnavailable", operation="BatchSendMessage")
        else:
            mp.setenv("AWS_ENDPOINT_URL_SQS", NOWHERE)
    elif fault == "secret-unreadable":
        stack.secrets.delete_secret(SecretId=SECRET, ForceDeleteWithoutRecovery=True)
        parameters.clear_caches()
    elif fault == "budget-unreachable":
        stack.fails_closed = True
        if stack.tablestore is not None:
            stack.tablestore.fail(times=None, status=503, code="OTSServerBusy")
        else:
            mp.setenv("CAMS_BUDGET_TABLE", "no-such-budget-table")
    else:
        raise AssertionError(f"unknown fault {fault}")
    for cached in (get_settings, get_lookup, get_refresh_queue):
        cached.cache_clear()


def header(response: dict[str, Any], name: str) -> str | None:
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    value: str | None = headers.get(name.lower())
    return value


def emitted_metrics(stdout: str) -> set[str]:
    """The metric names in the EMF documents Powertools printed, and "Name:Code" where a Code dimension is set."""
    names = set()
    for line in stdout.splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if not isinstance(document, dict) or "_aws" not in document:
            continue
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                names.add(metric["Name"])
                if "Code" in document:
                    names.add(f"{metric['Name']}:{document['Code']}")
    return names


READ_METRICS = {"HIT": {"CacheHits"}, "MISS": {"CacheMisses", "CamsCalls"}, "STALE": {"CacheMisses", "CacheStale"}}


def path_metrics(path: str, outcome: str) -> set[str]:
    """The metrics a path's outcome counts whatever the fault (a 500's is the fault's own: ConfigurationErrors)."""
    status, _, detail = outcome.partition(" ")
    if path == "worker":
        return {"Refresh_refreshed"} if outcome == "cached" else set()
    if status == "200":
        return READ_METRICS[detail]
    failed = {f"Http{status}"} if status not in ("202", "500") else set()
    return failed if path == "bulk" else {"CacheMisses"} | failed


def assert_http_answer(stack: Stack, fault: Fault, path: str, response: dict[str, Any], expected: str) -> None:
    status, _, detail = expected.partition(" ")
    assert response["statusCode"] == int(status), response.get("body")
    assert header(response, "Content-Type") == "application/json"
    assert "Traceback" not in response["body"]
    answer = json.loads(response["body"])
    retry_after = header(response, "Retry-After")
    if status in ("429", "503"):
        assert retry_after is not None and int(retry_after) >= 1
    else:
        assert retry_after is None
    if status == "200":
        assert header(response, "X-Cache") == detail
        assert answer["Data"]["Id"] and answer["Code"] == "OK"
    else:
        assert header(response, "X-Cache") is None
    if path == "bulk":
        queued = stack.queued()
        if status == "202":  # what was queued and what was not, as the queue holds it
            not_queued = answer.get("NotQueued", [])
            assert answer["Queued"] + len(not_queued) == len(ITEMS)
            assert sorted(map(json.dumps, queued)) == sorted(
                json.dumps(item) for i, item in enumerate(ITEMS) if i not in not_queued
            )
        else:
            assert queued == [] and f"none of {len(ITEMS)}" in answer["Message"]
    if status not in ("200", "202"):
        assert set(answer) == {"Code", "Message", "RequestId"} and answer["RequestId"]
        assert answer["Code"] == detail
        if fault.cams_request_id and path != "bulk":
            assert CAMS_REQUEST_ID.fullmatch(answer["RequestId"]), "CAMS's RequestId, not ours"


@pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")  # a bulk refresh counts none
@pytest.mark.parametrize(("platform", "budget", "fault_name", "path"), cells())
def test_fault_matrix(
    stack_for: Any,
    emulator_credentials: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    platform: str,
    budget: str,
    fault_name: str,
    path: str,
) -> None:
    # Given a deployment on this platform and budget, with a first good read where the path needs one
    stack: Stack = stack_for(platform, budget)
    fault = FAULTS[fault_name]
    expected = fault.expected(path, platform)
    prepare(stack, fault_name, emulator_credentials)
    if path == "stale":
        monkeypatch.setenv("CACHE_TTL_SECONDS", "0")  # past fresh at once, well within stale
    if path in ("hit", "stale"):
        first = stack.http("sub")
        assert (first["statusCode"], header(first, "X-Cache")) == (200, "MISS")
    calls_before = len(stack.cams.calls)
    # When the fault appears, and a fresh instance takes the path
    inject(stack, fault_name)
    capsys.readouterr()
    caplog.clear()
    if path == "worker":
        assert stack.worker_batch(fault.worker_seconds) == expected
    else:
        response = stack.http("refresh", body=json.dumps({"Items": ITEMS})) if path == "bulk" else stack.http("sub")
        assert_http_answer(stack, fault, path, response, expected)
    # Then its signal is there exactly where the path meets the fault: the log line (an invocation failed by a
    # transient fault is the platform's to log), and on AWS the metric
    signal = fault.signal
    met = path in signal.met_on
    if not expected.startswith("raised UpstreamFailed"):
        assert (signal.log in caplog.text) == met, f"log line {signal.log!r} {'missing' if met else 'unexpected'}"
    metrics = emitted_metrics(capsys.readouterr().out)
    if platform == "fc":
        assert metrics == set()  # no EMF on Function Compute
    else:
        counted = path in (signal.metric_on if signal.metric_on is not None else signal.met_on)
        assert (signal.metric in metrics) == counted, f"metric {signal.metric} {'missing' if counted else 'unexpected'}"
        assert path_metrics(path, expected) <= metrics, sorted(metrics)
    if expected in ("200 HIT", "202") or expected.startswith("raised"):
        assert len(stack.cams.calls) == calls_before  # a hit, a bulk refresh, a failed invocation: no CAMS call
    if fault.needs_store and path in ("hit", "miss", "stale"):
        assert len(stack.cams.calls) == calls_before  # never fail open
        assert expected != "200 HIT" or get_lookup().budget.stats.store_requests == 0  # a hit never asks the store


SLOW_STORE_BATCH = 8
SLOW_WORKER_SECONDS = 30


def slow_every_store(stack: Stack) -> None:
    """Every store the worker writes to answers just inside its client's timeout: the budget's record, the cache, the
    queue."""
    if stack.platform == "fc":
        assert stack.tablestore is not None and stack.oss is not None and stack.smq is not None
        stack.tablestore.slow(1.8)  # TIMEOUT_SECONDS 2
        stack.oss.stand_in.slow(1.8)  # 1 s to connect, 2 s to read
        stack.smq.stand_in.slow(2.8, operation="BatchSendMessage")  # TIMEOUT_SECONDS 3
    else:
        assert stack.aws is not None and stack.aws.server is not None
        for service, method, seconds in (("dynamodb", "POST", 1.8), ("s3", "GET", 1.8), ("s3", "PUT", 1.8)):
            stack.aws.server.slow(seconds, service=service, method=method)  # 1 s to connect, 2 s to read
        stack.aws.server.slow(1.8, service="sqs", method="POST")


@pytest.mark.slow
@pytest.mark.parametrize("platform", ["aws", "fc"])
def test_every_store_slow_the_worker_returns_in_time_and_loses_nothing(stack_for: Any, platform: str) -> None:
    # Given a batch of refreshes (one unprocessable, one CAMS keeps failing) on the shared budget, CAMS answering in
    # 0.8 s, and every store the worker writes to answering just inside its timeouts
    stack: Stack = stack_for(platform, "shared")
    spaces = [f"cs-slow-{i}" for i in range(SLOW_STORE_BATCH - 1)]
    bodies = ["not json"] + [json.dumps({"CustSpaceId": s, "IsvCode": f"isv-{s}"}) for s in spaces]
    for space in spaces:
        stack.cams.set_behaviour(space, "slow:0.8")
    stack.cams.set_behaviour(spaces[-1], "5xx")
    slow_every_store(stack)
    # When the worker takes the batch with SLOW_WORKER_SECONDS to run
    started = time.monotonic()
    if platform == "aws":
        [template] = load_event("sqs-single")["Records"]
        records = [template | {"messageId": f"m-{i}", "body": body} for i, body in enumerate(bodies)]
        answer = worker_app.lambda_handler({"Records": records}, FakeLambdaContext(SLOW_WORKER_SECONDS * 1000))
        failed = {
            r["body"] for r in records if r["messageId"] in {f["itemIdentifier"] for f in answer["batchItemFailures"]}
        }
    else:
        [template] = [json.loads((EVENTS / "fc-smq-single.json").read_text())]
        events = [
            template | {"data": template["data"] | {"messageId": f"m-{i}", "messageBody": b}}
            for i, b in enumerate(bodies)
        ]
        context = LocalFcContext(function=FunctionMeta(timeout=SLOW_WORKER_SECONDS))
        worker_app.handler(json.dumps(events).encode(), context)
        failed = set()
    elapsed = time.monotonic() - started
    # Then it returned before its timeout, and every message is in exactly one place
    assert elapsed < SLOW_WORKER_SECONDS, f"the invocation ran {elapsed:.1f} s of {SLOW_WORKER_SECONDS}"
    store = stack.aws if stack.aws is not None else stack.oss
    assert store is not None
    cached = {entry["CustSpaceId"] for entry in store.cache_objects().values()}
    resent = {m.get("CustSpaceId") for m in stack.queued()}
    dead = [json.loads(m["Message"]) if m["Message"].startswith("{") else m["Message"] for m in stack.queued("dlq")]
    returned = {json.loads(b)["CustSpaceId"] if b.startswith("{") else b for b in failed}
    places = sorted([*cached, *resent, *[d if isinstance(d, str) else d["CustSpaceId"] for d in dead], *returned])
    assert places == sorted(["not json", *spaces]), places
    assert spaces[-1] not in cached and cached, "the failing one is retried, and some were refreshed"
