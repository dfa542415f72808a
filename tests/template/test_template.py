"""template.yaml declares what SPEC promises: closed routes, a private cache, no lost messages, least privilege,
a CAMS quota split that cannot exceed 10 calls per second, logs that expire, alarms that fire, outputs to use."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode_str
from http_api import app

from waba_lookup.observability import count_error
from waba_lookup.settings import CAMS_MAX_QPS, Settings

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
QUOTA_PARAMETERS = ("HttpMaxInstances", "HttpQpsBudget", "WorkerMaxInstances", "WorkerQpsBudget")
ROUTE_SECURITY = {"Fn::If": ["UseJwt", [{"JwtAuthorizer": []}], [{"AWS_IAM": []}]]}
SECRET_ARN = "arn:aws:secretsmanager:ap-southeast-1:123456789012:secret:waba-lookup/cams-AbCdEf"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    decoded, problems = decode_str(TEMPLATE.read_text())
    assert not problems, problems
    return dict(decoded)


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


def statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every IAM statement the template writes: functions' inline policies, roles, policies, bucket policies."""
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
                    yield name, statement


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_every_route_the_code_serves_is_an_api_route_that_needs_iam_or_a_jwt(template: dict[str, Any]) -> None:
    api = resources(template, "AWS::Serverless::HttpApi")["HttpApi"]["Properties"]
    routes = {(e["Method"].lower(), e["Path"]): e for _, e in events(template, "HttpApi")}
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
    # a whole batch at the default per-instance share fits in half the worker's timeout
    parameters = template["Parameters"]
    share = parameters["WorkerQpsBudget"]["Default"] // parameters["WorkerMaxInstances"]["Default"]
    assert source["BatchSize"] / share <= prop(template, worker, "Timeout") / 2


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
    cache_and_secret = {
        "s3:GetObject": objects,
        "s3:PutObject": objects,
        "s3:ListBucket": bucket,
        "secretsmanager:GetSecretValue": secret,
    }

    assert granted == {
        "HttpApiFunction": {**cache_and_secret, "sqs:SendMessage": [{"Fn::GetAtt": ["RefreshQueue", "Arn"]}]},
        "QueueWorkerFunction": cache_and_secret,
    }
    for function in granted:
        assert env(template, function)["CAMS_CREDENTIALS_SECRET"] == {"Ref": "CamsCredentialsSecretArn"}
        assert env(template, function)["CACHE_BUCKET"] == {"Ref": "CacheBucket"}
    assert env(template, "HttpApiFunction")["REFRESH_QUEUE_URL"] == {"Ref": "RefreshQueue"}


def test_each_function_caps_its_instances_and_paces_with_the_same_quota_parameters(template: dict[str, Any]) -> None:
    http, worker = "HttpApiFunction", "QueueWorkerFunction"
    [(_, source)] = list(events(template, "SQS"))

    assert prop(template, http, "ReservedConcurrentExecutions") == {"Ref": "HttpMaxInstances"}
    assert source["ScalingConfig"]["MaximumConcurrency"] == {"Ref": "WorkerMaxInstances"}
    assert env(template, http)["CAMS_MAX_INSTANCES"] == {"Ref": "HttpMaxInstances"}
    assert env(template, http)["CAMS_QPS_BUDGET"] == {"Ref": "HttpQpsBudget"}
    assert env(template, worker)["CAMS_MAX_INSTANCES"] == {"Ref": "WorkerMaxInstances"}
    assert env(template, worker)["CAMS_QPS_BUDGET"] == {"Ref": "WorkerQpsBudget"}


def test_the_default_quota_split_fits_cams_limit(template: dict[str, Any]) -> None:
    defaults = {name: template["Parameters"][name]["Default"] for name in QUOTA_PARAMETERS}

    assert defaults["HttpQpsBudget"] + defaults["WorkerQpsBudget"] <= CAMS_MAX_QPS
    assert defaults["HttpMaxInstances"] <= defaults["HttpQpsBudget"]
    assert defaults["WorkerMaxInstances"] <= defaults["WorkerQpsBudget"]
    assert template["Parameters"]["WorkerMaxInstances"]["MinValue"] >= 2  # SQS MaximumConcurrency's minimum
    for name in QUOTA_PARAMETERS:
        assert {"MinValue", "MaxValue"} <= set(template["Parameters"][name]), name


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


def rules_accept(template: dict[str, Any], values: dict[str, Any]) -> bool:
    """Whether CloudFormation would let a stack be created with these values (rules only; bounds are checked apart)."""
    rules = template["Rules"].values()
    applying = [rule for rule in rules if "RuleCondition" not in rule or evaluate(rule["RuleCondition"], values)]
    return all(evaluate(assertion["Assert"], values) for rule in applying for assertion in rule["Assertions"])


def test_rules_accept_exactly_the_quota_splits_that_keep_cams_under_ten_calls(template: dict[str, Any]) -> None:
    bounds = [template["Parameters"][name] for name in QUOTA_PARAMETERS]
    ranges = [range(b["MinValue"], b["MaxValue"] + 1) for b in bounds]
    wrong = []
    for http_instances, http_budget, worker_instances, worker_budget in itertools.product(*ranges):
        fits = (
            http_budget + worker_budget <= CAMS_MAX_QPS
            and http_instances <= http_budget
            and worker_instances <= worker_budget
        )
        given = dict(zip(QUOTA_PARAMETERS, map(str, (http_instances, http_budget, worker_instances, worker_budget))))
        if rules_accept(template, parameter_values(template, **given)) != fits:
            wrong.append(given)
    assert not wrong, f"{len(wrong)} splits judged wrongly, e.g. {wrong[:3]}"
    assert rules_accept(template, parameter_values(template))
    for spelling in ("4.0", "04", " 4"):  # CloudFormation takes these as numbers; the rules would not see a 4
        assert not rules_accept(template, parameter_values(template, HttpQpsBudget=spelling))


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
    split_on_purpose = {"CAMS_MAX_INSTANCES", "CAMS_QPS_BUDGET"}  # the quota split, tested above
    for function in resources(template, "AWS::Serverless::Function"):
        variables = {k: v for k, v in env(template, function).items() if not k.startswith("POWERTOOLS_")}
        assert set(variables) <= set(read), set(variables) - set(read)
        for name, value in variables.items():
            parameter = parameters.get(value.get("Ref", "")) if isinstance(value, dict) else None
            if parameter and "Default" in parameter and name not in split_on_purpose:
                assert parameter["Default"] == getattr(defaults, name.lower()), name


def test_functions_run_python312_on_arm64_with_the_shared_layer_and_tracing(template: dict[str, Any]) -> None:
    layer = template["Resources"]["WabaLookupLayer"]

    assert layer["Properties"]["ContentUri"] == "layers/"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
    assert layer["Metadata"] == {"BuildMethod": "python3.12", "BuildArchitecture": "arm64"}
    for function in resources(template, "AWS::Serverless::Function"):
        assert prop(template, function, "Runtime") == "python3.12"
        assert prop(template, function, "Architectures") == ["arm64"]
        assert prop(template, function, "Layers") == [{"Ref": "WabaLookupLayer"}]
        assert prop(template, function, "Tracing") == "Active"
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
        if a["Properties"]["Namespace"] == namespace and a["Properties"]["MetricName"] == metric
    ]
    return alarm


def test_an_alarm_fires_on_the_first_dead_lettered_message(template: dict[str, Any]) -> None:
    alarm = alarm_on(template, "AWS/SQS", "ApproximateNumberOfMessagesVisible")

    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}}]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)


def test_an_alarm_fires_on_flow_control_as_the_code_emits_it(
    template: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    powertools = template["Globals"]["Function"]["Environment"]["Variables"]
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", powertools["POWERTOOLS_SERVICE_NAME"])
    for switch in ("POWERTOOLS_METRICS_DISABLED", "POWERTOOLS_DEV"):
        monkeypatch.delenv(switch, raising=False)
    count_error("System.LimitControl")
    emitted = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    [directive] = emitted["_aws"]["CloudWatchMetrics"]
    [dimensions] = directive["Dimensions"]

    alarm = alarm_on(template, directive["Namespace"], "CamsErrors")
    assert directive["Namespace"] == powertools["POWERTOOLS_METRICS_NAMESPACE"]
    assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == {name: emitted[name] for name in dimensions}
    assert (alarm["Statistic"], alarm["Period"], alarm["Threshold"]) == ("Sum", 300, 0)
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"


def test_outputs_name_what_a_deployer_needs(template: dict[str, Any]) -> None:
    outputs = {name: output["Value"] for name, output in template["Outputs"].items()}

    assert outputs["RefreshQueueUrl"] == {"Ref": "RefreshQueue"}
    assert outputs["DeadLetterQueueUrl"] == {"Ref": "DeadLetterQueue"}
    assert outputs["CacheBucketName"] == {"Ref": "CacheBucket"}
    assert outputs["HttpApiFunctionName"] == {"Ref": "HttpApiFunction"}
    assert outputs["QueueWorkerFunctionName"] == {"Ref": "QueueWorkerFunction"}
    assert "${HttpApi}.execute-api." in outputs["ApiUrl"]["Fn::Sub"]


def test_the_secret_parameter_takes_only_a_full_secret_arn(template: dict[str, Any]) -> None:
    pattern = re.compile(template["Parameters"]["CamsCredentialsSecretArn"]["AllowedPattern"])

    assert pattern.match(SECRET_ARN)
    assert not pattern.match(SECRET_ARN.removesuffix("-AbCdEf"))  # IAM would not match the secret's real ARN
    assert not pattern.match("waba-lookup/cams")
