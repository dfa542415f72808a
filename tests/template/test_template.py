"""template.yaml declares what SPEC promises: closed routes, a private cache, no lost messages, least privilege,
one CAMS budget for the whole deployment in one table (no static shares), logs that expire, alarms that fire,
outputs to use. Some tests read the template after the SAM transform, as CloudFormation runs it."""

from __future__ import annotations

import ast
import dataclasses
import fnmatch
import importlib.util
import itertools
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
from cfnlint.decode import decode_str
from http_api import app

from waba_local.dev.poller import LocalLambdaContext
from waba_lookup.budget.dynamodb import DynamoLogStore
from waba_lookup.budget.shared import SharedBudget
from waba_lookup.budget.store import MemoryLogStore
from waba_lookup.cache import ObjectStoreError, WabaCache
from waba_lookup.compose import budget_for
from waba_lookup.customer import Customer
from waba_lookup.errors import BudgetUnavailable
from waba_lookup.lookup import RefreshOutcome
from waba_lookup.observability import count, count_error, metrics
from waba_lookup.settings import CAMS_MAX_QPS, Settings

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
TOOLS_PYTHON = TEMPLATE.parent / ".venv-tools" / "bin" / "python"  # `make tools`: SAM CLI, with samtranslator
# The SAM transform as `sam validate` runs it: code locations stand in as S3 URIs, they are not the transform's concern.
SAM_TRANSFORM = """
import json, sys
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

template = yaml_parse(sys.stdin.read())
for resource in template["Resources"].values():
    for location in ("CodeUri", "ContentUri"):
        if location in resource.get("Properties", {}):
            resource["Properties"][location] = "s3://bucket/key"
json.dump(Translator(managed_policy_map=None, sam_parser=Parser()).translate(template, parameter_values={}), sys.stdout)
"""
QUOTA_PARAMETERS = ("CamsQpsBudget", "InteractiveReserve", "WorkerMaxInstances")
ROUTE_SECURITY = {"Fn::If": ["UseJwt", [{"JwtAuthorizer": []}], [{"AWS_IAM": []}]]}
SECRET_ARN = "arn:aws:secretsmanager:ap-southeast-1:123456789012:secret:waba-lookup/cams-AbCdEf"
TOPIC_ARN = "arn:aws:sns:ap-southeast-1:123456789012:waba-lookup-alarms"
NO_VALUE = object()  # AWS::NoValue, resolved: the property is left out


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    decoded, problems = decode_str(TEMPLATE.read_text())
    assert not problems, problems
    return dict(decoded)


@pytest.fixture(scope="module")
def transformed() -> dict[str, Any]:
    """The template after the SAM transform: what CloudFormation creates (roles, routes, stage, permissions)."""
    python = Path(sys.executable) if importlib.util.find_spec("samtranslator") else TOOLS_PYTHON
    if not python.exists():
        pytest.skip("the SAM transform needs samtranslator, which `make tools` installs with SAM CLI")
    run = subprocess.run(
        [str(python), "-c", SAM_TRANSFORM],
        input=TEMPLATE.read_text(),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "AWS_DEFAULT_REGION": "ap-southeast-1"},
    )
    assert run.returncode == 0, run.stderr
    return dict(json.loads(run.stdout))


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def prop(template: dict[str, Any], function: str, name: str) -> Any:
    """A function's property, or the Globals' one it inherits."""
    own = template["Resources"][function]["Properties"]
    return own[name] if name in own else template.get("Globals", {}).get("Function", {}).get(name)


def env(template: dict[str, Any], function: str) -> dict[str, Any]:
    inherited = template["Globals"]["Function"]["Environment"]["Variables"]
    return {**inherited, **template["Resources"][function]["Properties"].get("Environment", {}).get("Variables", {})}


def events(template: dict[str, Any], kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for function in resources(template, "AWS::Serverless::Function"):
        for event in template["Resources"][function]["Properties"].get("Events", {}).values():
            if event["Type"] == kind:
                yield function, event["Properties"]


def role_of(template: dict[str, Any], function: str) -> str | None:
    """The logical name of the function's own role, when it has one rather than SAM's."""
    role = prop(template, function, "Role")
    return role["Fn::GetAtt"][0] if isinstance(role, dict) and "Fn::GetAtt" in role else None


def statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every IAM statement the template writes: functions' inline policies, roles (a function's own role under the
    function's name), policies, bucket policies."""
    owners = {role_of(template, f): f for f in resources(template, "AWS::Serverless::Function")}
    for function in resources(template, "AWS::Serverless::Function"):
        for policy in prop(template, function, "Policies") or []:
            for statement in policy["Statement"]:
                yield function, statement
    for kind in ("AWS::IAM::Role", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::S3::BucketPolicy"):
        for name, resource in resources(template, kind).items():
            documents = [p["PolicyDocument"] for p in resource["Properties"].get("Policies", [])]
            documents += (
                [resource["Properties"]["PolicyDocument"]] if "PolicyDocument" in resource["Properties"] else []
            )
            for document in documents:
                for statement in document["Statement"]:
                    yield owners.get(name, name), statement


class UnreachableStore:
    """An object store that fails every call, as S3 does when it is unreachable or refuses."""

    def read(self, key: str) -> bytes | None:
        raise ObjectStoreError("SlowDown", "ClientError")

    def write(self, key: str, data: bytes) -> None:
        raise ObjectStoreError(None, "ConnectTimeoutError")


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_every_route_the_code_serves_is_an_api_route_that_needs_iam_or_a_jwt(template: dict[str, Any]) -> None:
    api = resources(template, "AWS::Serverless::HttpApi")["HttpApi"]["Properties"]
    routes = {(e["Method"].lower(), e["Path"]): e for _, e in events(template, "HttpApi") if e["Path"] != "$default"}
    served = {(r.method.lower(), r.openapi_path) for r in [*app.http_api._static_routes, *app.http_api._dynamic_routes]}

    assert set(routes) == served
    assert api["Auth"] == {"EnableIamAuthorizer": True, "DefaultAuthorizer": "AWS_IAM"}
    for (method, path), event in routes.items():
        assert event["ApiId"] == {"Ref": "HttpApi"}
        assert event.get("Auth", {}).get("Authorizer") != "NONE", (method, path)
        assert api["DefinitionBody"]["paths"][path][method]["security"] == ROUTE_SECURITY, (method, path)
    assert template["Conditions"]["UseJwt"] == {"Fn::Equals": [{"Ref": "AuthMode"}, "JWT"]}
    assert template["Parameters"]["AuthMode"]["Default"] == "IAM"
    jwt = api["DefinitionBody"]["components"]["securitySchemes"]["JwtAuthorizer"]["Fn::If"][1]
    assert jwt["x-amazon-apigateway-authorizer"]["jwtConfiguration"] == {
        "issuer": {"Ref": "JwtIssuer"},
        "audience": {"Ref": "JwtAudience"},
    }


def default_route_event(method: str, path: str) -> dict[str, Any]:
    """An HTTP API (v2) event as API Gateway sends it for a request that matched no route but $default."""
    event: dict[str, Any] = json.loads((TEMPLATE.parent / "events" / "http-v2-own.json").read_text())
    event.update(routeKey="$default", rawPath=path)
    http = {**event["requestContext"]["http"], "method": method, "path": path}
    event["requestContext"] = {**event["requestContext"], "routeKey": "$default", "http": http}
    return event


@pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")  # a 404 counts none
def test_any_other_request_reaches_the_function_behind_the_same_authorizer(template: dict[str, Any]) -> None:
    [(function, route)] = [(f, e) for f, e in events(template, "HttpApi") if e["Path"] == "$default"]
    paths = template["Resources"]["HttpApi"]["Properties"]["DefinitionBody"]["paths"]

    assert function == "HttpApiFunction"
    assert (route["Method"], route["ApiId"]) == ("ANY", {"Ref": "HttpApi"})
    assert route.get("Auth", {}).get("Authorizer") != "NONE"
    assert paths["$default"] == {"x-amazon-apigateway-any-method": {"isDefaultRoute": True, "security": ROUTE_SECURITY}}
    # what the function answers there: its own JSON errors, not API Gateway's {"message": "Not Found"}
    for (method, path), status in {("GET", "/nowhere"): 404, ("DELETE", "/waba"): 405}.items():
        answer = app.lambda_handler(default_route_event(method, path), LocalLambdaContext())
        assert answer["statusCode"] == status, (method, path)
        assert set(json.loads(answer["body"])) == {"Code", "Message", "RequestId"}


def test_the_deployed_api_sends_any_other_request_to_the_function_with_the_same_security(
    transformed: dict[str, Any],
) -> None:
    paths = transformed["Resources"]["HttpApi"]["Properties"]["Body"]["paths"]
    route = paths["/$default"]["x-amazon-apigateway-any-method"]
    permissions = [
        r["Properties"]
        for r in transformed["Resources"].values()
        if r["Type"] == "AWS::Lambda::Permission" and r["Properties"]["FunctionName"] == {"Ref": "HttpApiFunction"}
    ]

    assert route["isDefaultRoute"] is True
    assert route["security"] == ROUTE_SECURITY
    assert all(method["security"] == ROUTE_SECURITY for path in paths.values() for method in path.values())
    assert "${HttpApiFunction.Arn}" in route["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
    # API Gateway may invoke the function for the $default route: any method and path of any stage of this API
    assert any(p["SourceArn"]["Fn::Sub"][0].endswith("${__ApiId__}/${__Stage__}/*") for p in permissions)
    assert all(p["SourceArn"]["Fn::Sub"][1]["__ApiId__"] == {"Ref": "HttpApi"} for p in permissions)


def test_each_route_is_throttled_by_parameters_within_the_account_limits(template: dict[str, Any]) -> None:
    settings = template["Resources"]["HttpApi"]["Properties"]["DefaultRouteSettings"]
    rate, burst = (template["Parameters"][name] for name in ("HttpThrottlingRateLimit", "HttpThrottlingBurstLimit"))

    assert settings == {
        "ThrottlingRateLimit": {"Ref": "HttpThrottlingRateLimit"},
        "ThrottlingBurstLimit": {"Ref": "HttpThrottlingBurstLimit"},
    }
    # a stage's limits cannot exceed the account's per Region: 10,000 requests per second, a burst of 5,000
    assert 1 <= rate["MinValue"] <= rate["Default"] <= rate["MaxValue"] <= 10000
    assert 1 <= burst["MinValue"] <= burst["Default"] <= burst["MaxValue"] <= 5000
    assert burst["Default"] >= rate["Default"]  # a second's worth of requests at once is not refused


def test_the_deployed_stage_throttles_every_route(transformed: dict[str, Any]) -> None:
    [stage] = [r["Properties"] for r in transformed["Resources"].values() if r["Type"] == "AWS::ApiGatewayV2::Stage"]

    assert stage["ApiId"] == {"Ref": "HttpApi"}
    assert stage["DefaultRouteSettings"] == {
        "ThrottlingRateLimit": {"Ref": "HttpThrottlingRateLimit"},
        "ThrottlingBurstLimit": {"Ref": "HttpThrottlingBurstLimit"},
    }
    assert "RouteSettings" not in stage  # no route is left out of the default


def test_the_api_stage_writes_access_logs(template: dict[str, Any]) -> None:
    logs = resources(template, "AWS::Serverless::HttpApi")["HttpApi"]["Properties"]["AccessLogSettings"]
    assert logs["DestinationArn"]["Fn::GetAtt"][0] in resources(template, "AWS::Logs::LogGroup")
    assert "$context.requestId" in logs["Format"]


def test_the_cache_bucket_is_private_encrypted_tls_only_and_expires_entries(template: dict[str, Any]) -> None:
    bucket = template["Resources"]["CacheBucket"]["Properties"]
    parameters = template["Parameters"]

    encryption = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert encryption["SSEAlgorithm"] in ("AES256", "aws:kms", "aws:kms:dsse")
    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    assert bucket["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    expiry = [
        r for r in bucket["LifecycleConfiguration"]["Rules"] if r["Status"] == "Enabled" and "ExpirationInDays" in r
    ]
    assert [r["Prefix"] for r in expiry] == [{"Ref": "CachePrefix"}]
    servable = parameters["CacheTtlSeconds"]["MaxValue"] + parameters["CacheStaleSeconds"]["MaxValue"]
    assert expiry[0]["ExpirationInDays"] * 86400 > servable, "the lifecycle rule would delete servable entries"

    policy = next(p for p in resources(template, "AWS::S3::BucketPolicy").values())["Properties"]
    assert policy["Bucket"] == {"Ref": "CacheBucket"}
    tls = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert [s["Condition"] for s in tls] == [{"Bool": {"aws:SecureTransport": "false"}}]
    assert tls[0]["Principal"] == "*" and tls[0]["Action"] == "s3:*"
    assert tls[0]["Resource"] == [{"Fn::GetAtt": ["CacheBucket", "Arn"]}, {"Fn::Sub": "${CacheBucket.Arn}/*"}]


def test_refreshes_are_retried_then_dead_lettered_never_lost(template: dict[str, Any]) -> None:
    queue = template["Resources"]["RefreshQueue"]["Properties"]
    dlq = template["Resources"]["DeadLetterQueue"]["Properties"]
    [(worker, source)] = list(events(template, "SQS"))

    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    assert 3 <= queue["RedrivePolicy"]["maxReceiveCount"] <= 10
    assert queue["VisibilityTimeout"] >= 6 * prop(template, worker, "Timeout")
    assert dlq["MessageRetentionPeriod"] == 14 * 86400
    assert dlq["MessageRetentionPeriod"] > queue.get("MessageRetentionPeriod", 4 * 86400)
    for properties in (queue, dlq):
        assert properties.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in properties
    assert source["Queue"] == {"Fn::GetAtt": ["RefreshQueue", "Arn"]}
    assert source["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert 10 <= source["BatchSize"] and 0 < source["MaximumBatchingWindowInSeconds"] <= 5


def test_a_whole_batch_fits_in_half_the_worker_timeout_at_the_defaults_while_reads_call_cams(
    template: dict[str, Any],
) -> None:
    [(worker, source)] = list(events(template, "SQS"))
    budget, reserve, instances = (template["Parameters"][name]["Default"] for name in QUOTA_PARAMETERS)

    # every worker instance busy, sharing what reads leave; records beyond the timeout are sent again, not lost
    assert source["BatchSize"] / ((budget - reserve) / instances) <= prop(template, worker, "Timeout") / 2


def test_policies_are_explicit_statements_without_wildcard_actions(template: dict[str, Any]) -> None:
    for function in resources(template, "AWS::Serverless::Function"):
        for policy in prop(template, function, "Policies") or []:
            assert isinstance(policy, dict) and set(policy) <= {"Version", "Statement"}, (function, policy)
    allowed = [(owner, s) for owner, s in statements(template) if s["Effect"] == "Allow"]
    assert allowed
    for owner, statement in allowed:
        for action in as_list(statement["Action"]):
            assert "*" not in action, (owner, action)
        assert "*" not in as_list(statement["Resource"]), (owner, statement)
    for owner, statement in statements(template):
        if statement["Effect"] == "Deny":  # a deny may be broad; ours only refuses plain HTTP
            assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}, owner


def test_each_function_gets_exactly_the_access_its_code_needs(template: dict[str, Any]) -> None:
    granted: dict[str, dict[str, list[Any]]] = {}
    for owner, statement in statements(template):
        if statement["Effect"] == "Allow":
            for action in as_list(statement["Action"]):
                granted.setdefault(owner, {})[action] = as_list(statement["Resource"])
    objects = [{"Fn::Sub": "arn:${AWS::Partition}:s3:::${CacheBucket}/${CachePrefix}*"}]
    bucket = [{"Fn::Sub": "arn:${AWS::Partition}:s3:::${CacheBucket}"}]
    secret = [{"Ref": "CamsCredentialsSecretArn"}]
    budget_table = [{"Fn::GetAtt": ["CamsBudgetTable", "Arn"]}]
    shared = {
        "s3:GetObject": objects,
        "s3:PutObject": objects,
        "s3:ListBucket": bucket,
        "secretsmanager:GetSecretValue": secret,
        # the budget's one item: read strongly consistent, created and updated with conditional writes
        "dynamodb:GetItem": budget_table,
        "dynamodb:PutItem": budget_table,
        "dynamodb:UpdateItem": budget_table,
    }

    # the HTTP function queues refreshes; the worker sends again the records it had no time left for; both use the
    # queues' key, through SQS only (the HTTP function cannot receive, so it never reads a message)
    key = [{"Fn::GetAtt": ["QueueKey", "Arn"]}]
    queue = {
        "sqs:SendMessage": [{"Fn::GetAtt": ["RefreshQueue", "Arn"]}],
        "kms:GenerateDataKey": key,
        "kms:Decrypt": key,
    }
    # the worker's own role also holds what SAM would have attached, scoped: polling the refresh queue (Lambda's
    # event source mapping uses the function's role) and writing to its own log group
    refresh_queue = [{"Fn::GetAtt": ["RefreshQueue", "Arn"]}]
    poller = {action: refresh_queue for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")}
    log_group = [{"Fn::GetAtt": ["QueueWorkerFunctionLogGroup", "Arn"]}]
    logs = {"logs:CreateLogStream": log_group, "logs:PutLogEvents": log_group}
    assert granted == {"HttpApiFunction": shared | queue, "QueueWorkerFunction": shared | queue | poller | logs}
    for function in granted:
        assert env(template, function)["CAMS_CREDENTIALS_SECRET"] == {"Ref": "CamsCredentialsSecretArn"}
        assert env(template, function)["CACHE_BUCKET"] == {"Ref": "CacheBucket"}
    for function in granted:
        assert env(template, function)["REFRESH_QUEUE_URL"] == {"Ref": "RefreshQueue"}


def test_listing_the_bucket_is_confined_to_the_cache_prefix_its_entries_live_under(template: dict[str, Any]) -> None:
    listing = [(owner, s) for owner, s in statements(template) if "s3:ListBucket" in as_list(s["Action"])]
    prefix = template["Parameters"]["CachePrefix"]["Default"]
    keys = [WabaCache(UnreachableStore(), prefix, "1234").object_key(c) for c in (Customer(), Customer("293", "isv"))]

    assert {owner for owner, _ in listing} == {"HttpApiFunction", "QueueWorkerFunction"}
    for owner, statement in listing:
        assert as_list(statement["Action"]) == ["s3:ListBucket"], owner
        assert statement["Condition"] == {"StringLike": {"s3:prefix": [{"Fn::Sub": "${CachePrefix}*"}]}}, owner
    # S3 checks ListBucket with the missing key as s3:prefix: every key the cache reads matches, so a miss stays 404
    assert all(fnmatch.fnmatchcase(key, f"{prefix}*") for key in keys), keys


def test_the_worker_polls_the_refresh_queue_only(template: dict[str, Any], transformed: dict[str, Any]) -> None:
    worker = transformed["Resources"]["QueueWorkerFunction"]["Properties"]
    role = transformed["Resources"][worker["Role"]["Fn::GetAtt"][0]]["Properties"]
    granted = [
        (action, statement["Resource"])
        for policy in role.get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Allow"
        for action in as_list(statement["Action"])
    ]
    x_ray = {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AWSXrayWriteOnlyAccess"}

    # no AWS managed policy (AWSLambdaSQSQueueExecutionRole, AWSLambdaBasicExecutionRole: Resource "*"), but X-Ray's
    # write-only one when traced: X-Ray has no resource-level permissions
    for tracing, managed in (("Disabled", []), ("Active", [x_ray])):
        values = parameter_values(template, XRayTracing=tracing)
        assert resolve(transformed, role.get("ManagedPolicyArns", []), values) == managed, tracing
    sqs = [(action, resource) for action, resource in granted if action.startswith("sqs:")]
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"} <= {action for action, _ in sqs}
    assert all(resource == {"Fn::GetAtt": ["RefreshQueue", "Arn"]} for _, resource in sqs), sqs
    assert all("*" not in as_list(resource) for _, resource in granted)


def test_both_functions_take_their_permits_from_one_budget_with_the_same_values(template: dict[str, Any]) -> None:
    http, worker = (env(template, f) for f in ("HttpApiFunction", "QueueWorkerFunction"))

    for name, source in [
        ("CAMS_BUDGET_TABLE", "CamsBudgetTable"),
        ("CAMS_QPS_BUDGET", "CamsQpsBudget"),
        ("CAMS_INTERACTIVE_RESERVE", "InteractiveReserve"),
    ]:
        assert http[name] == worker[name] == {"Ref": source}, name


def test_the_budget_table_is_one_on_demand_item_with_nothing_to_restore(template: dict[str, Any]) -> None:
    [(name, table)] = resources(template, "AWS::DynamoDB::Table").items()
    properties = table["Properties"]

    assert name == "CamsBudgetTable"
    assert properties["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert properties["AttributeDefinitions"] == [{"AttributeName": "pk", "AttributeType": "S"}]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": False}
    for absent in ("TimeToLiveSpecification", "GlobalSecondaryIndexes", "LocalSecondaryIndexes", "TableName"):
        assert absent not in properties, absent  # a fixed TableName would also allow one stack per account only
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Delete"
    skipped = {check["id"]: check["comment"] for check in table["Metadata"]["checkov"]["skip"]}
    assert set(skipped) <= {"CKV_AWS_28", "CKV_AWS_119"} and all(skipped.values())


def test_reads_scale_with_lambda(template: dict[str, Any]) -> None:
    properties = template["Resources"]["HttpApiFunction"]["Properties"]

    assert "ReservedConcurrentExecutions" not in properties
    assert "HttpMaxInstances" not in template["Parameters"]
    assert "CapsHttpInstances" not in template.get("Conditions", {})


def test_no_static_share_is_deployed_beside_the_table(template: dict[str, Any]) -> None:
    """CAMS_MAX_INSTANCES sizes an instance's own budget without a table only: with one it is unused, so neither
    function gets it, and both get the shared budget on the stack's table."""
    for function in resources(template, "AWS::Serverless::Function"):
        variables = resolve(template, env(template, function), parameter_values(template))
        assert "CAMS_MAX_INSTANCES" not in variables, function
        budget = budget_for(Settings.from_env(variables))
        assert isinstance(budget, SharedBudget) and not budget.local, function
        assert isinstance(budget.store, DynamoLogStore) and budget.store.table == "CamsBudgetTable", function


def test_the_worker_caps_its_instances_with_one_parameter(template: dict[str, Any]) -> None:
    [(worker, source)] = list(events(template, "SQS"))

    assert source["ScalingConfig"]["MaximumConcurrency"] == {"Ref": "WorkerMaxInstances"}
    assert "ReservedConcurrentExecutions" not in template["Resources"][worker]["Properties"]


def test_the_defaults_spend_the_whole_quota_and_keep_reads_first(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    defaults = {name: parameters[name]["Default"] for name in QUOTA_PARAMETERS}

    assert defaults["CamsQpsBudget"] == parameters["CamsQpsBudget"]["MaxValue"] == CAMS_MAX_QPS
    assert 0 < defaults["InteractiveReserve"] < defaults["CamsQpsBudget"]
    assert parameters["WorkerMaxInstances"]["MinValue"] >= 2  # SQS MaximumConcurrency's minimum
    assert rules_accept(template, parameter_values(template))
    for name in QUOTA_PARAMETERS:
        assert {"MinValue", "MaxValue"} <= set(parameters[name]), name


def parameter_values(template: dict[str, Any], **given: str) -> dict[str, Any]:
    """Parameter values as CloudFormation hands them to rules: strings, lists for CommaDelimitedList."""
    values: dict[str, Any] = {}
    for name, parameter in template["Parameters"].items():
        raw = given.get(name, str(parameter.get("Default", "")))
        values[name] = raw.split(",") if parameter["Type"] == "CommaDelimitedList" else raw
    return values


def evaluate(expression: Any, values: dict[str, Any]) -> Any:
    """The rule functions of CloudFormation that the template uses; anything else fails the test."""
    if isinstance(expression, list):
        return [evaluate(item, values) for item in expression]
    if not isinstance(expression, dict):
        return expression
    [(function, argument)] = expression.items()
    if function == "Ref":
        return values[argument]
    arguments = evaluate(argument, values)
    operations = {
        "Fn::Equals": lambda a: a[0] == a[1],
        "Fn::Not": lambda a: not a[0],
        "Fn::And": all,
        "Fn::Or": any,
        "Fn::Contains": lambda a: a[1] in a[0],
    }
    assert function in operations, f"rule function {function} is not evaluated by this test"
    return operations[function](arguments)


def resolve(template: dict[str, Any], value: Any, values: dict[str, Any]) -> Any:
    """A property as CloudFormation deploys it with these parameter values: each Fn::If decided, AWS::NoValue
    left out, a resource's Ref standing for its logical name; other functions are left as they are."""
    if isinstance(value, list):
        return [item for item in (resolve(template, v, values) for v in value) if item is not NO_VALUE]
    if not isinstance(value, dict):
        return value
    if value == {"Ref": "AWS::NoValue"}:
        return NO_VALUE
    if list(value) == ["Ref"]:
        return values.get(value["Ref"], value["Ref"])
    if list(value) == ["Fn::If"]:
        condition, when_true, when_false = value["Fn::If"]
        return resolve(
            template, when_true if evaluate(template["Conditions"][condition], values) else when_false, values
        )
    resolved = {key: resolve(template, v, values) for key, v in value.items()}
    return {key: v for key, v in resolved.items() if v is not NO_VALUE}


def rules_accept(template: dict[str, Any], values: dict[str, Any]) -> bool:
    """Whether CloudFormation would let a stack be created with these values (rules only; bounds are checked apart)."""
    rules = template["Rules"].values()
    applying = [rule for rule in rules if "RuleCondition" not in rule or evaluate(rule["RuleCondition"], values)]
    return all(evaluate(assertion["Assert"], values) for rule in applying for assertion in rule["Assertions"])


def quota_values(template: dict[str, Any], quota: tuple[int, ...], **given: str) -> dict[str, Any]:
    return parameter_values(template, **dict(zip(QUOTA_PARAMETERS, map(str, quota))), **given)


def quota_combinations(template: dict[str, Any]) -> Iterator[tuple[int, ...]]:
    """Every combination of quota values within the parameters' bounds, which CloudFormation checks before rules."""
    bounds = [template["Parameters"][name] for name in QUOTA_PARAMETERS]
    return itertools.product(*[range(b["MinValue"], b["MaxValue"] + 1) for b in bounds])


def accepted_quotas(template: dict[str, Any]) -> list[tuple[int, ...]]:
    return [quota for quota in quota_combinations(template) if rules_accept(template, quota_values(template, quota))]


def test_rules_accept_exactly_the_budgets_that_leave_background_refreshes_a_permit(template: dict[str, Any]) -> None:
    wrong = []
    for quota in quota_combinations(template):
        budget, reserve, _ = quota
        fits = reserve < budget  # reads first, and refreshes still get permits while reads call CAMS
        if rules_accept(template, quota_values(template, quota)) != fits:
            wrong.append(quota)
    assert not wrong, f"{len(wrong)} combinations {QUOTA_PARAMETERS} judged wrongly, e.g. {wrong[:3]}"
    for name, spelling in [("CamsQpsBudget", "10.0"), ("CamsQpsBudget", "010"), ("InteractiveReserve", " 2")]:
        # CloudFormation takes these as numbers; the rules would not recognise them
        assert not rules_accept(template, parameter_values(template, **{name: spelling})), (name, spelling)


def test_every_quota_value_the_console_offers_can_be_deployed(template: dict[str, Any]) -> None:
    accepted = accepted_quotas(template)

    for position, name in enumerate(QUOTA_PARAMETERS):
        bounds = template["Parameters"][name]
        assert {quota[position] for quota in accepted} == set(range(bounds["MinValue"], bounds["MaxValue"] + 1)), name


def test_every_accepted_combination_starts_both_functions_on_one_shared_budget(template: dict[str, Any]) -> None:
    accepted = accepted_quotas(template)
    for quota in accepted:
        values = quota_values(template, quota)
        for function in resources(template, "AWS::Serverless::Function"):
            settings = Settings.from_env(resolve(template, env(template, function), values))  # raises if refused
            budget = budget_for(settings)
            assert isinstance(budget, SharedBudget) and isinstance(budget.store, DynamoLogStore), (quota, function)
            assert (budget.policy.budget, budget.policy.reserve) == quota[:2], (quota, function)
            assert budget.store.table == "CamsBudgetTable"
    assert accepted


def test_rules_require_an_issuer_and_an_audience_in_jwt_mode(template: dict[str, Any]) -> None:
    issuer = "https://cognito-idp.ap-southeast-1.amazonaws.com/ap-southeast-1_Example"

    assert rules_accept(template, parameter_values(template, AuthMode="IAM"))
    assert not rules_accept(template, parameter_values(template, AuthMode="JWT", JwtAudience="a"))
    assert not rules_accept(template, parameter_values(template, AuthMode="JWT", JwtIssuer=issuer))
    assert not rules_accept(template, parameter_values(template, AuthMode="JWT", JwtIssuer=issuer, JwtAudience="a,"))
    assert rules_accept(template, parameter_values(template, AuthMode="JWT", JwtIssuer=issuer, JwtAudience="a,b"))


def test_environment_names_and_defaults_are_the_ones_settings_reads(template: dict[str, Any]) -> None:
    read: list[str] = []

    class Recording(dict[str, str]):
        def get(self, key: str, default: Any = None) -> Any:
            read.append(key)
            return super().get(key, default)

    Settings.from_env(Recording())
    parameters, defaults = template["Parameters"], Settings()
    for function in resources(template, "AWS::Serverless::Function"):
        variables = {k: v for k, v in env(template, function).items() if not k.startswith("POWERTOOLS_")}
        assert set(variables) <= set(read), set(variables) - set(read)
        for name, value in variables.items():
            parameter = parameters.get(value.get("Ref", "")) if isinstance(value, dict) else None
            if parameter and "Default" in parameter:
                assert parameter["Default"] == getattr(defaults, name.lower()), name


def test_functions_run_python312_on_arm64_with_the_shared_layer_and_tracing_off_unless_asked(
    template: dict[str, Any],
) -> None:
    layer = template["Resources"]["WabaLookupLayer"]

    assert layer["Properties"]["ContentUri"] == "layers/"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
    assert layer["Metadata"] == {"BuildMethod": "python3.12", "BuildArchitecture": "arm64"}
    for function in resources(template, "AWS::Serverless::Function"):
        assert prop(template, function, "Runtime") == "python3.12"
        assert prop(template, function, "Architectures") == ["arm64"]
        assert prop(template, function, "Layers") == [{"Ref": "WabaLookupLayer"}]
        assert prop(template, function, "Tracing") == {"Fn::If": ["TracingOn", "Active", "PassThrough"]}
        assert env(template, function)["POWERTOOLS_TRACE_DISABLED"] == {"Fn::If": ["TracingOn", "false", "true"]}
        assert prop(template, function, "Handler") == "app.lambda_handler"
        assert (TEMPLATE.parent / prop(template, function, "CodeUri") / "app.py").is_file()


def test_every_log_group_expires_and_each_function_logs_to_its_own(template: dict[str, Any]) -> None:
    groups = resources(template, "AWS::Logs::LogGroup")

    assert groups and all(1 <= g["Properties"]["RetentionInDays"] <= 400 for g in groups.values())
    targets = [prop(template, f, "LoggingConfig")["LogGroup"] for f in resources(template, "AWS::Serverless::Function")]
    assert all(t["Ref"] in groups for t in targets) and len({t["Ref"] for t in targets}) == len(targets)


def alarm_on(template: dict[str, Any], namespace: str, metric: str) -> dict[str, Any]:
    [alarm] = [
        a["Properties"]
        for a in resources(template, "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("Namespace") == namespace and a["Properties"].get("MetricName") == metric
    ]
    return alarm


def test_an_alarm_fires_on_the_first_dead_lettered_message(template: dict[str, Any]) -> None:
    alarm = alarm_on(template, "AWS/SQS", "ApproximateNumberOfMessagesVisible")

    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}}]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)


def metrics_as_deployed(template: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Metrics on, under the service name the template gives the functions; the template's Powertools variables."""
    powertools: dict[str, Any] = template["Globals"]["Function"]["Environment"]["Variables"]
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", powertools["POWERTOOLS_SERVICE_NAME"])
    for switch in ("POWERTOOLS_METRICS_DISABLED", "POWERTOOLS_DEV"):
        monkeypatch.delenv(switch, raising=False)
    return powertools


def test_an_alarm_fires_on_flow_control_as_the_code_emits_it(
    template: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    powertools = metrics_as_deployed(template, monkeypatch)
    count_error("System.LimitControl")
    emitted = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    [directive] = emitted["_aws"]["CloudWatchMetrics"]
    [dimensions] = directive["Dimensions"]

    alarm = alarm_on(template, directive["Namespace"], "CamsErrors")
    assert directive["Namespace"] == powertools["POWERTOOLS_METRICS_NAMESPACE"]
    assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == {name: emitted[name] for name in dimensions}
    assert (alarm["Statistic"], alarm["Period"], alarm["Threshold"]) == ("Sum", 300, 0)
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"


def test_an_alarm_fires_when_an_instance_cannot_reach_the_budget_table_as_the_code_counts_it(
    template: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for switch in ("POWERTOOLS_METRICS_DISABLED", "POWERTOOLS_DEV"):
        monkeypatch.delenv(switch, raising=False)
    table = MemoryLogStore()
    table.down = True  # every request fails, the immediate retry too
    deployed = budget_for(Settings(cams_budget_table="CamsBudgetTable"))
    assert isinstance(deployed, SharedBudget)
    budget = dataclasses.replace(deployed, store=table)  # the deployed budget, on a table that fails
    with pytest.raises(BudgetUnavailable), budget.permit(time.monotonic() + 1, interactive=True):
        pytest.fail("a CAMS call was let through without the table")
    metrics.flush_metrics()
    emitted = [
        blob
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("{")
        and "_aws" in (blob := json.loads(line))
        and any(m["Name"] == "BudgetStoreUnavailable" for d in blob["_aws"]["CloudWatchMetrics"] for m in d["Metrics"])
    ]
    [blob] = emitted
    [directive] = blob["_aws"]["CloudWatchMetrics"]
    [dimensions] = directive["Dimensions"]

    alarm = alarm_on(template, directive["Namespace"], "BudgetStoreUnavailable")
    assert blob["BudgetStoreUnavailable"] == [1.0]  # once per refused call, not once per failed request
    assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == {name: blob[name] for name in dimensions}
    assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"]) == ("Sum", 300, 1)
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanOrEqualToThreshold", 1)


def test_an_alarm_fires_on_cache_failures_as_the_code_counts_them(
    template: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for switch in ("POWERTOOLS_METRICS_DISABLED", "POWERTOOLS_DEV"):
        monkeypatch.delenv(switch, raising=False)
    assert WabaCache(UnreachableStore(), "waba/", "1234").get(Customer()) is None
    metrics.flush_metrics()
    [blob] = [
        blob
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("{")
        and "_aws" in (blob := json.loads(line))
        and any(m["Name"] == "CacheFailures" for d in blob["_aws"]["CloudWatchMetrics"] for m in d["Metrics"])
    ]
    [directive] = blob["_aws"]["CloudWatchMetrics"]
    [dimensions] = directive["Dimensions"]

    alarm = alarm_on(template, directive["Namespace"], "CacheFailures")
    assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == {name: blob[name] for name in dimensions}
    assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"]) == ("Sum", 300, 1)
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanOrEqualToThreshold", 1)


def test_every_alarm_notifies_the_alarm_topic_when_one_is_given(template: dict[str, Any]) -> None:
    alarms = resources(template, "AWS::CloudWatch::Alarm")

    assert len(alarms) >= 10
    for name, alarm in alarms.items():
        notified = resolve(template, alarm["Properties"], parameter_values(template, AlarmTopicArn=TOPIC_ARN))
        silent = resolve(template, alarm["Properties"], parameter_values(template))
        assert notified["AlarmActions"] == notified["OKActions"] == [TOPIC_ARN], name
        assert "AlarmActions" not in silent and "OKActions" not in silent, name
        assert notified["TreatMissingData"] == "notBreaching", name


# --- alarms and the dashboard: what they name is what the code and AWS publish --------------------------------------

SOURCES = [
    *(TEMPLATE.parent / "layers" / "waba_lookup").rglob("*.py"),
    *(TEMPLATE.parent / "functions").glob("*/app.py"),
]
# The values an f-string metric name's placeholder takes, read from the code that decides them.
PLACEHOLDER_VALUES = {
    "status": lambda: {str(status) for status in app.STATUSES},  # count(f"Http{status}")
    "outcome": lambda: set(get_args(RefreshOutcome)),  # count(f"Refresh_{outcome}")
}
# AWS's metrics that the alarms and the dashboard may name, with the one dimension each is read by here and the kind
# of resource that dimension names (with the attribute it takes, if any). Lambda:
# https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html and monitoring-concurrency.html; SQS:
# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-available-cloudwatch-metrics.html;
# HTTP APIs (not REST APIs' 4XXError/5XXError): https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-metrics.html
AWS_METRICS = {
    "AWS/Lambda": (
        {"Errors", "Throttles", "Invocations", "Duration", "ConcurrentExecutions"},
        ("FunctionName", "AWS::Serverless::Function", None),
    ),
    "AWS/SQS": (
        {
            "ApproximateAgeOfOldestMessage",
            "ApproximateNumberOfMessagesDelayed",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesVisible",
            "NumberOfMessagesSent",
            "NumberOfMessagesReceived",
            "NumberOfMessagesDeleted",
        },
        ("QueueName", "AWS::SQS::Queue", "QueueName"),
    ),
    "AWS/ApiGateway": (
        {"4xx", "5xx", "Count", "Latency", "IntegrationLatency", "DataProcessed"},
        ("ApiId", "AWS::Serverless::HttpApi", None),
    ),
}
# Published metrics the dashboard leaves out on purpose.
NOT_ON_THE_DASHBOARD = {"RefreshSkippedRecent": "the same event as Refresh_recent, counted one layer down"}
SEARCH = re.compile(r"\{([^,}]+)((?:,[^,}]+)*)\}\s+MetricName=\"([^\"]+)\"")


def published_metrics() -> set[str]:
    """Every metric name the code counts: count("Name"), single_metric(name="Name"), and count(f"Http{status}")
    expanded over the values its placeholder takes."""
    names: set[str] = set()
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            callee = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            if callee == "count" and node.args:
                argument: ast.expr | None = node.args[0]
            elif callee in ("single_metric", "add_metric"):
                argument = next((k.value for k in node.keywords if k.arg == "name"), None)
            else:
                continue
            names |= metric_names(argument, path)
    return names


def metric_names(argument: ast.expr | None, path: Path) -> set[str]:
    if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
        return {argument.value}
    if isinstance(argument, ast.JoinedStr):
        parts: list[list[str]] = []
        for value in argument.values:
            if isinstance(value, ast.FormattedValue):
                placeholder = ast.unparse(value.value)
                assert placeholder in PLACEHOLDER_VALUES, f"{path}: say which values {{{placeholder}}} takes"
                parts.append(sorted(PLACEHOLDER_VALUES[placeholder]()))
            else:
                parts.append([str(value.value)])  # type: ignore[attr-defined]
        return {"".join(combination) for combination in itertools.product(*parts)}
    # only observability's own helpers pass a name through; anywhere else the name would go unchecked
    assert path.name == "observability.py", f"{path}: a metric name that is neither a literal nor an f-string"
    return set()


def dashboard(template: dict[str, Any], **given: str) -> dict[str, Any]:
    """The dashboard's body as CloudWatch gets it: each ${} of its Fn::Sub replaced by a parameter's value (its default
    unless given), or by the name of the resource (and attribute) it refers to."""
    [board] = resources(template, "AWS::CloudWatch::Dashboard").values()
    body, values = board["Properties"]["DashboardBody"]["Fn::Sub"], parameter_values(template, **given)

    def value(match: re.Match[str]) -> str:
        name = match[1]
        assert name in values or name.split(".")[0] in template["Resources"] or name.startswith("AWS::"), name
        return str(values.get(name, name))

    return dict(json.loads(re.sub(r"\$\{([^}!]+)\}", value, body)))


def widgets_metrics(widget: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, str | None]]]:
    """(namespace, metric, dimensions) of each metric a widget draws; a SEARCH gives its dimension names only."""
    for row in widget["properties"].get("metrics", []):
        if isinstance(row[0], dict):
            for namespace, others, name in SEARCH.findall(row[0]["expression"]):
                yield namespace, name, dict.fromkeys(others.strip(",").split(","))
            continue
        namespace, name, *pairs = [item for item in row if not isinstance(item, dict)]
        yield namespace, name, dict(zip(pairs[::2], pairs[1::2], strict=True))


def dashboard_metrics(template: dict[str, Any]) -> list[tuple[str, str, dict[str, str | None]]]:
    return [metric for widget in dashboard(template)["widgets"] for metric in widgets_metrics(widget)]


def referred(value: Any) -> str:
    """What an alarm's dimension value refers to, spelled as the dashboard's Fn::Sub spells it: X, or X.Attribute."""
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return ".".join(value["Fn::GetAtt"])
    return str(value)


def alarm_metrics(template: dict[str, Any]) -> list[tuple[str, str, dict[str, str | None]]]:
    metrics_: list[tuple[str, str, dict[str, str | None]]] = []
    for alarm in resources(template, "AWS::CloudWatch::Alarm").values():
        properties = alarm["Properties"]
        stats = [q["MetricStat"]["Metric"] for q in properties.get("Metrics", []) if "MetricStat" in q]
        for metric in [properties, *stats] if "MetricName" in properties else stats:
            dimensions = {d["Name"]: referred(d["Value"]) for d in metric.get("Dimensions", [])}
            metrics_.append((metric["Namespace"], metric["MetricName"], dimensions))
    return metrics_


def emitted_dimensions(name: str, code: str | None, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """The dimensions the code publishes a metric with, read from the EMF line it prints."""
    if name == "CamsErrors":
        count_error(code or "System.LimitControl")
    else:
        count(name)
        metrics.flush_metrics()
    for line in reversed(capsys.readouterr().out.splitlines()):
        blob = json.loads(line) if line.startswith("{") else {}
        for directive in blob.get("_aws", {}).get("CloudWatchMetrics", []):
            if any(m["Name"] == name for m in directive["Metrics"]):
                [dimensions] = directive["Dimensions"]
                return {d: blob[d] for d in dimensions}
    raise AssertionError(f"{name} was not published")


def test_each_function_alarms_on_its_errors_and_throttles(template: dict[str, Any]) -> None:
    for function in resources(template, "AWS::Serverless::Function"):
        for metric in ("Errors", "Throttles"):
            [alarm] = [
                a["Properties"]
                for a in resources(template, "AWS::CloudWatch::Alarm").values()
                if (a["Properties"].get("Namespace"), a["Properties"].get("MetricName")) == ("AWS/Lambda", metric)
                and a["Properties"]["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function}}]
            ]
            assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"]) == ("Sum", 300, 1), function
            assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanOrEqualToThreshold", 1), function


def test_an_alarm_fires_when_refreshes_wait_longer_than_a_parameter_says(template: dict[str, Any]) -> None:
    alarm = alarm_on(template, "AWS/SQS", "ApproximateAgeOfOldestMessage")
    parameter = template["Parameters"][alarm["Threshold"]["Ref"]]

    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["RefreshQueue", "QueueName"]}}]
    assert (alarm["Statistic"], alarm["ComparisonOperator"]) == ("Maximum", "GreaterThanThreshold")
    # an age the queue never lets a message reach could never fire
    retention = prop(template, "RefreshQueue", "MessageRetentionPeriod")
    assert 60 <= parameter["MinValue"] <= parameter["Default"] <= parameter["MaxValue"] <= retention


def test_an_alarm_fires_on_a_rate_of_5xx_from_the_http_api(template: dict[str, Any]) -> None:
    [alarm] = [
        a["Properties"] for a in resources(template, "AWS::CloudWatch::Alarm").values() if "Metrics" in a["Properties"]
    ]
    queries = {q["Id"]: q for q in alarm["Metrics"]}
    [returned] = [q for q in queries.values() if q["ReturnData"]]

    for metric in ("5xx", "Count"):
        [query] = [q for q in queries.values() if q.get("MetricStat", {}).get("Metric", {}).get("MetricName") == metric]
        assert query["MetricStat"]["Metric"]["Dimensions"] == [{"Name": "ApiId", "Value": {"Ref": "HttpApi"}}]
        assert (query["MetricStat"]["Stat"], query["ReturnData"]) == ("Sum", False)
        assert query["Id"] in returned["Expression"]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 5)


def test_every_metric_the_alarms_and_the_dashboard_name_is_one_that_is_published(
    template: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    powertools = metrics_as_deployed(template, monkeypatch)
    published, namespace = published_metrics(), powertools["POWERTOOLS_METRICS_NAMESPACE"]
    named = alarm_metrics(template) + dashboard_metrics(template)

    assert {"CacheHits", "CamsCalls", "BudgetStoreUnavailable", "Http429"} <= published  # the scan finds them
    for space, name, dimensions in named:
        if space == namespace:
            assert name in published, f"{name}: no code publishes it"
            emitted = emitted_dimensions(name, dimensions.get("Code"), capsys)
            if None in dimensions.values():  # a SEARCH: its dimension names
                assert set(dimensions) == set(emitted), name
            else:
                assert dimensions == emitted, name
        else:
            assert space in AWS_METRICS, f"{space}/{name}: a namespace neither the code nor this test knows"
            names, (dimension, kind, attribute) = AWS_METRICS[space]
            assert name in names, f"{space} publishes no {name}"
            assert set(dimensions) == {dimension}, (space, name, dimensions)
            resource, _, used = str(dimensions[dimension]).partition(".")
            assert template["Resources"][resource]["Type"] == kind, (space, name, dimensions)
            assert used == (attribute or ""), (space, name, dimensions)


def test_the_dashboard_draws_every_metric_the_code_publishes(template: dict[str, Any]) -> None:
    drawn = {name for space, name, _ in dashboard_metrics(template) if space == "WabaLookup"}

    assert published_metrics() - drawn == set(NOT_ON_THE_DASHBOARD)
    assert NOT_ON_THE_DASHBOARD.keys() <= published_metrics()


def test_the_dashboard_shows_every_alarm(template: dict[str, Any]) -> None:
    [panel] = [w for w in dashboard(template)["widgets"] if w["type"] == "alarm"]

    assert sorted(panel["properties"]["alarms"]) == sorted(
        f"{name}.Arn" for name in resources(template, "AWS::CloudWatch::Alarm")
    )


def test_the_dashboard_draws_cams_calls_per_second_against_the_budget_deployed(template: dict[str, Any]) -> None:
    for budget in ("7", template["Parameters"]["CamsQpsBudget"]["Default"]):
        [panel] = [
            w["properties"]
            for w in dashboard(template, CamsQpsBudget=str(budget))["widgets"]
            if any(name == "CamsCalls" for _, name, _ in widgets_metrics(w))
        ]
        [calls] = [row[-1]["id"] for row in panel["metrics"] if "CamsCalls" in row]
        expressions = [row[0]["expression"] for row in panel["metrics"] if isinstance(row[0], dict)]

        assert f"FILL({calls}, 0) / PERIOD({calls})" in expressions  # a count per period, drawn per second
        assert {"label": "CamsQpsBudget", "value": int(budget)} in panel["annotations"]["horizontal"]


def test_the_dashboard_draws_the_queue_age_against_its_alarm(template: dict[str, Any]) -> None:
    [panel] = [
        w["properties"]
        for w in dashboard(template, RefreshQueueAgeAlarmSeconds="900")["widgets"]
        if any(name == "ApproximateAgeOfOldestMessage" for _, name, _ in widgets_metrics(w))
    ]

    assert {"label": "RefreshQueueAgeAlarm", "value": 900, "yAxis": "right"} in panel["annotations"]["horizontal"]


def test_operations_explains_every_alarm_and_the_dashboard(template: dict[str, Any]) -> None:
    operations = (TEMPLATE.parent / "docs" / "operations.md").read_text()

    for name in [*resources(template, "AWS::CloudWatch::Alarm"), *resources(template, "AWS::CloudWatch::Dashboard")]:
        assert f"`{name}`" in operations, name


def test_outputs_name_what_a_deployer_needs(template: dict[str, Any]) -> None:
    outputs = {name: output["Value"] for name, output in template["Outputs"].items()}

    assert outputs["RefreshQueueUrl"] == {"Ref": "RefreshQueue"}
    assert outputs["DeadLetterQueueUrl"] == {"Ref": "DeadLetterQueue"}
    assert outputs["CacheBucketName"] == {"Ref": "CacheBucket"}
    assert outputs["BudgetTableName"] == {"Ref": "CamsBudgetTable"}
    assert outputs["HttpApiFunctionName"] == {"Ref": "HttpApiFunction"}
    assert outputs["QueueWorkerFunctionName"] == {"Ref": "QueueWorkerFunction"}
    assert outputs["DashboardName"] == {"Ref": "Dashboard"}
    assert "${HttpApi}.execute-api." in outputs["ApiUrl"]["Fn::Sub"]


def test_the_secret_parameter_takes_only_a_full_secret_arn(template: dict[str, Any]) -> None:
    pattern = re.compile(template["Parameters"]["CamsCredentialsSecretArn"]["AllowedPattern"])

    assert pattern.match(SECRET_ARN)
    assert not pattern.match(SECRET_ARN.removesuffix("-AbCdEf"))  # IAM would not match the secret's real ARN
    assert not pattern.match("waba-lookup/cams")


def test_the_queues_are_encrypted_with_the_deployments_key_usable_through_sqs_only(template: dict[str, Any]) -> None:
    for queue in ("RefreshQueue", "DeadLetterQueue"):
        assert prop(template, queue, "KmsMasterKeyId") == {"Ref": "QueueKey"}, queue
    policy = prop(template, "QueueKey", "KeyPolicy")["Statement"]
    admin, use = policy
    assert not {"kms:Decrypt", "kms:GenerateDataKey", "kms:*", "kms:Encrypt"} & set(admin["Action"])
    assert set(use["Action"]) == {"kms:GenerateDataKey", "kms:Decrypt"}
    assert use["Condition"]["StringEquals"]["kms:ViaService"] == {"Fn::Sub": "sqs.${AWS::Region}.amazonaws.com"}
    assert prop(template, "QueueKey", "EnableKeyRotation") is True
    functions = resources(template, "AWS::Serverless::Function")
    for owner, statement in statements(template):
        if owner in functions and any(str(a).startswith("kms:") for a in as_list(statement["Action"])):
            assert (
                statement["Condition"]["StringEquals"]["kms:ViaService"]
                == use["Condition"]["StringEquals"]["kms:ViaService"]
            ), owner
