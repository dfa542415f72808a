"""s.yaml declares what SPEC and docs/deploy-fc.md promise on Function Compute: the handlers that exist, the layer
that `make build-fc` writes, configuration the library reads, a role per function that can do what its function
does and nothing else, a private cache that expires, the refresh queue, its dead-letter queue and the worker's SMQ
trigger, signed requests by default, and one number per function for both the instance cap and the static shares.

The file is checked once its variables are substituted (by waba_local.s_yaml, and by Serverless Devs' own
`s preview` when it is installed: both must agree) against tests/template/s_yaml.schema.json.
"""

from __future__ import annotations

import ast
import copy
import json
import math
import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from waba_local import build_fc, s_yaml
from waba_local.s_yaml import HTTP, WORKER, functions, output_of, raw, ros_resources
from waba_lookup import redelivery
from waba_lookup.settings import CAMS_MAX_QPS, Settings
from waba_lookup.smq import SmqQueue, parse_queue_url

ROOT = Path(__file__).resolve().parents[2]
S_YAML = ROOT / "s.yaml"
GUIDE = ROOT / "docs" / "deploy-fc.md"
SCHEMA = json.loads(Path(__file__).with_name("s_yaml.schema.json").read_text())
ACCOUNT = s_yaml.ACCOUNT
ENVIRONMENT = {"WABA_LAYER_VERSION": "3"}  # what the deployer exports (docs/deploy-fc.md)
# Read by Function Compute or by Powertools itself, not by the library.
PLATFORM_VARIABLES = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_LOG_LEVEL"}
FC_VARIABLES = {"FC_REGION": "ap-southeast-1"}
SEND = ["mns:BatchSendMessage", "mns:SendMessage"]


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    """s.yaml with its variables substituted."""
    return s_yaml.rendered(S_YAML, ENVIRONMENT, ACCOUNT)


def stack_value(document: dict[str, Any], value: Any) -> Any:
    """A ROS output's value once deployed, as far as these tests need: Fn::Join, and Fn::GetAtt of a name."""
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(str(stack_value(document, part)) for part in parts)
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        name, attribute = value["Fn::GetAtt"]
        properties = ros_resources(document)[name]["Properties"]
        return properties.get({"QueueName": "QueueName", "Name": "BucketName"}.get(attribute, ""), f"<{attribute}>")
    return value


def deployed_environment(document: dict[str, Any], function: str) -> dict[str, str]:
    """A function's environment as FC will give it: the stack's outputs filled in, FC's own variables added."""
    variables = functions(document)[function]["environmentVariables"]
    resolved = {
        k: stack_value(document, output_of(document, v)) if v.startswith("${") else v for k, v in variables.items()
    }
    return {**resolved, **FC_VARIABLES, "FC_FUNCTION_NAME": functions(document)[function]["functionName"]}


def statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]


def queue_resource(document: dict[str, Any], variable: str) -> tuple[str, dict[str, Any]]:
    """The ROS queue named by a var (refreshQueueName, deadLetterQueueName): its logical name and properties."""
    queues = ros_resources(document, "ALIYUN::MNS::Queue")
    ((name, queue),) = [(n, q) for n, q in queues.items() if q["Properties"]["QueueName"] == document["vars"][variable]]
    return name, queue["Properties"]


def worker_trigger(document: dict[str, Any]) -> dict[str, Any]:
    (trigger,) = [t for t in functions(document)[WORKER]["triggers"] if t["triggerType"] == "eventbridge"]
    return dict(trigger["triggerConfig"])


def test_s_yaml_validates_against_the_schema(doc: dict[str, Any]) -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.validate(doc, SCHEMA, cls=jsonschema.Draft7Validator)


TRIGGER = ("props", "triggers", 0, "triggerConfig")
RUN = (*TRIGGER, "runOptions")


@pytest.mark.parametrize(
    ("resource", "path", "value"),
    [
        (HTTP, ("props", "memorySize"), 500),  # not a multiple of 64
        (HTTP, ("props", "runtime"), "python3.10"),
        (HTTP, ("props", "environmentVariables", "CAMS_QPS_BUDGET"), 5),  # FC takes strings
        (HTTP, ("props", "environmentVariables", "ALIBABA_CLOUD_ACCESS_KEY_ID"), "LTAI5tExample"),
        (HTTP, (*TRIGGER, "authType"), "anonymous"),
        (HTTP, (*TRIGGER, "authType"), "jwt"),  # without its authConfig
        (HTTP, ("props", "concurrencyConfig", "reservedConcurrency"), "5"),
        (HTTP, ("props", "memory"), 512),  # a misspelt property fc3 would ignore
        (
            WORKER,
            (*TRIGGER, "eventSourceConfig", "eventSourceParameters", "sourceMNSParameters", "IsBase64Decode"),
            True,
        ),
        (WORKER, (*TRIGGER, "asyncInvocationType"), True),
        (WORKER, (*TRIGGER, "eventSinkConfig", "deliveryOption", "eventSchema"), "RawData"),
        (WORKER, (*RUN, "mode"), "event-driven"),
        (WORKER, (*RUN, "errorsTolerance"), "NONE"),
        (WORKER, (*RUN, "batchWindow", "TimeBasedWindow"), 30),  # at most 15 s
        (WORKER, (*RUN, "retryStrategy", "PushRetryStrategy"), "RETRY"),
        (WORKER, (*RUN, "deadLetterQueue", "Arn"), "acs:mns:ap-southeast-1:1:queues/dlq"),  # without the slash
        (WORKER, ("props", "triggers", 0, "invocationRole"), "acs:ram::1:role/x"),  # fc3 drops it for eventbridge
    ],
)
def test_schema_rejects_what_fc_would_refuse_or_ignore(
    doc: dict[str, Any], resource: str, path: tuple[Any, ...], value: Any
) -> None:
    broken = copy.deepcopy(doc)
    target = broken["resources"][resource]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCHEMA, cls=jsonschema.Draft7Validator)


def test_every_environment_variable_is_read_by_the_library_or_the_platform(doc: dict[str, Any]) -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "layers" / "waba_lookup").rglob("*.py"))
    for name, props in functions(doc).items():
        unread = [v for v in props["environmentVariables"] if v not in PLATFORM_VARIABLES and f'"{v}"' not in source]
        assert not unread, f"{name} sets variables nothing reads: {unread}"


def test_no_access_key_in_the_environment(doc: dict[str, Any]) -> None:
    for props in functions(doc).values():
        variables = props["environmentVariables"]
        assert not [name for name in variables if name.startswith("ALIBABA_CLOUD_")]
        assert not [value for value in variables.values() if re.fullmatch(r"LTAI\w{12,}", value)]


def test_every_handler_is_defined_in_functions(doc: dict[str, Any]) -> None:
    assert {props["code"] for props in functions(doc).values()} == {f"./.fc-build/{n}" for n in build_fc.FUNCTIONS}
    for name, props in functions(doc).items():
        code = props["code"].removeprefix("./.fc-build/")
        assert build_fc.FUNCTIONS.get(code) == props["handler"], f"make build-fc does not build {props['code']}"
        module, _, function = props["handler"].rpartition(".")
        path = ROOT / "functions" / code / f"{module}.py"
        assert path.is_file(), f"{name}: {path} does not exist"
        tree = ast.parse(path.read_text())
        defined = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert function in defined, f"{name}: {path.relative_to(ROOT)} defines no {function}()"
        assert len(defined[function].args.args) == 2, f"{function}() must take (event, context)"


def test_the_layer_is_what_make_build_fc_writes(doc: dict[str, Any]) -> None:
    layer_zip = f"./{build_fc.LAYER_ZIP.relative_to(ROOT)}"
    name = doc["vars"]["layerName"]
    for props in functions(doc).values():
        assert [re.sub(r".*:layers/(.*)/versions/.*", r"\1", arn) for arn in props["layers"]] == [name]
    # s.yaml's and the guide's publish commands publish that file under that name
    for text in (S_YAML.read_text(), GUIDE.read_text()):
        assert f"--layer-name {name}" in text
        assert f"--code {layer_zip}" in text


def test_each_role_may_do_what_its_function_does_only(doc: dict[str, Any]) -> None:
    bucket, prefix, region = doc["vars"]["cacheBucket"], doc["vars"]["cachePrefix"], doc["vars"]["region"]
    queue, dead = (
        f"acs:mns:{region}:{ACCOUNT}:/queues/{doc['vars'][v]}/messages"
        for v in ("refreshQueueName", "deadLetterQueueName")
    )
    common = [
        (["cams:QueryChatappBindWaba"], ["*"]),  # CAMS authorises this action on "*" only
        (["oss:GetObject", "oss:PutObject"], [f"acs:oss:*:*:{bucket}/{prefix}*"]),
    ]
    # the HTTP function sends refreshes; the worker re-sends and dead-letters. Neither receives: the trigger does.
    expected = {HTTP: [*common, (SEND, [queue])], WORKER: [*common, (SEND, [queue, dead])]}
    roles = ros_resources(doc, "ALIYUN::RAM::Role")
    assert not ros_resources(doc, "ALIYUN::RAM::AttachPolicyToRole"), "no system policy: they grant too much"
    assert len(roles) == len(expected), "one role per function, and no role for the trigger (fc3 uses EventBridge's)"
    for function, props in functions(doc).items():
        (role_name,) = [n for n in roles if output_of(doc, props["role"]) == {"Fn::GetAtt": [n, "Arn"]}]
        role = roles[role_name]
        trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert trust == [{"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": ["fc.aliyuncs.com"]}}]
        granted = statements(role)
        assert all(s["Effect"] == "Allow" for s in granted)
        assert not [a for s in granted for a in s["Action"] if "*" in a], f"{role_name}: wildcard actions"
        assert sorted((sorted(s["Action"]), s["Resource"]) for s in granted) == sorted(expected[function])
    assert len({output_of(doc, props["role"])["Fn::GetAtt"][0] for props in functions(doc).values()}) == 2


def test_mns_resources_are_the_two_queues_messages(doc: dict[str, Any]) -> None:
    names = {q["Properties"]["QueueName"] for q in ros_resources(doc, "ALIYUN::MNS::Queue").values()}
    assert names == {doc["vars"]["refreshQueueName"], doc["vars"]["deadLetterQueueName"]}
    for role in ros_resources(doc, "ALIYUN::RAM::Role").values():
        for statement in statements(role):
            mns = [r for r in statement["Resource"] if r.startswith("acs:mns:")]
            assert all(re.fullmatch(r"acs:mns:[a-z0-9-]+:\d+:/queues/([\w-]+)/messages", r) for r in mns), mns
            assert {r.split("/")[2] for r in mns} <= names


def test_the_cache_bucket_is_private_encrypted_and_expires(doc: dict[str, Any]) -> None:
    ((name, bucket),) = ros_resources(doc, "ALIYUN::OSS::Bucket").items()
    properties = bucket["Properties"]
    assert properties["BucketName"] == doc["vars"]["cacheBucket"]
    assert properties["AccessControl"] == "private"
    assert properties["BlockPublicAccess"] is True
    assert properties["ServerSideEncryptionConfiguration"]["SSEAlgorithm"] in ("AES256", "KMS", "SM4")
    (rule,) = [r for r in properties["LifecycleConfiguration"]["Rule"] if r["Prefix"] == doc["vars"]["cachePrefix"]]
    assert rule["Status"] == "Enabled"
    # never before an entry stops being servable, and not much later
    servable_days = math.ceil((doc["vars"]["cacheTtlSeconds"] + doc["vars"]["cacheStaleSeconds"]) / 86400)
    assert servable_days <= rule["Expiration"]["Days"] <= 30
    assert rule["AbortMultipartUpload"]["Days"] >= 1
    for props in functions(doc).values():
        assert output_of(doc, props["environmentVariables"]["CACHE_BUCKET"]) == {"Fn::GetAtt": [name, "Name"]}
        assert props["environmentVariables"]["CACHE_PREFIX"] == doc["vars"]["cachePrefix"]


def test_logs_go_to_the_stacks_logstore(doc: dict[str, Any]) -> None:
    ((name, logstore),) = ros_resources(doc, "ALIYUN::SLS::Logstore").items()
    assert logstore["Properties"]["TTL"] == 30
    assert ros_resources(doc, "ALIYUN::SLS::Index"), "the console's log queries need an index"
    for props in functions(doc).values():
        assert output_of(doc, props["logConfig"]["logstore"]) == {"Fn::GetAtt": [name, "LogstoreName"]}
        assert "Fn::GetAtt" in output_of(doc, props["logConfig"]["project"])


def test_the_http_trigger_takes_signed_requests_by_default() -> None:
    document = raw()
    assert document["vars"]["httpTrigger"]["authType"] == "function"
    (trigger,) = document["resources"][HTTP]["props"]["triggers"]
    assert trigger["triggerConfig"] == "${vars.httpTrigger}"
    assert {"GET", "POST"} <= set(document["vars"]["httpTrigger"]["methods"])


def test_the_guides_jwt_trigger_is_valid(doc: dict[str, Any]) -> None:
    (block,) = re.findall(r"```yaml\n(\s*httpTrigger:\n.*?)\s*```", GUIDE.read_text(), re.DOTALL)
    trigger = yaml.safe_load(textwrap.dedent(block))["httpTrigger"]
    assert trigger["authType"] == "jwt"
    with_jwt = copy.deepcopy(doc)
    with_jwt["resources"][HTTP]["props"]["triggers"][0]["triggerConfig"] = trigger
    jsonschema.validate(with_jwt, SCHEMA, cls=jsonschema.Draft7Validator)


@pytest.mark.parametrize(("function", "prefix"), [(HTTP, "http"), (WORKER, "worker")])
def test_reserved_concurrency_is_the_static_shares_instance_count(
    doc: dict[str, Any], function: str, prefix: str
) -> None:
    props = raw()["resources"][function]["props"]
    assert props["concurrencyConfig"]["reservedConcurrency"] == f"${{vars.{prefix}MaxInstances}}"
    assert props["environmentVariables"]["CAMS_MAX_INSTANCES"] == f"${{str('vars.{prefix}MaxInstances')}}"
    assert props["environmentVariables"]["CAMS_QPS_BUDGET"] == f"${{str('vars.{prefix}CamsQpsBudget')}}"
    budget, instances = doc["vars"][f"{prefix}CamsQpsBudget"], doc["vars"][f"{prefix}MaxInstances"]
    assert 1 <= instances <= budget <= CAMS_MAX_QPS, "each instance needs at least one call per second"
    # and the library accepts the environment FC will give it
    settings = Settings.from_env(deployed_environment(doc, function))
    assert settings.calls_per_second == budget // instances >= 1
    assert settings.cache_backend == "oss"


def test_the_functions_shares_add_up_to_the_accounts_quota_at_most(doc: dict[str, Any]) -> None:
    """CAMS counts per account: without a shared budget, each function's budget is its part of the 10 calls/s."""
    shares = {f: Settings.from_env(deployed_environment(doc, f)) for f in functions(doc)}
    assert sum(s.calls_per_second * s.cams_max_instances for s in shares.values()) <= CAMS_MAX_QPS
    assert doc["vars"]["httpCamsQpsBudget"] + doc["vars"]["workerCamsQpsBudget"] <= CAMS_MAX_QPS


def test_the_queues_outlive_the_worker_and_keep_dead_letters_longest(doc: dict[str, Any]) -> None:
    _, refresh = queue_resource(doc, "refreshQueueName")
    _, dead = queue_resource(doc, "deadLetterQueueName")
    timeout = functions(doc)[WORKER]["timeout"]
    # a message the trigger holds stays hidden while its batch runs and is retried (on AWS: 6 x the timeout)
    assert refresh["VisibilityTimeout"] >= 6 * timeout
    assert refresh["VisibilityTimeout"] <= 43200  # SMQ's limit
    for queue in (refresh, dead):
        assert 60 <= queue["MessageRetentionPeriod"] <= 604800  # SMQ's limits: 1 minute to 7 days
        assert queue.get("DelaySeconds", 0) == 0  # re-sends carry their own delays
        assert queue["MaximumMessageSize"] >= SmqQueue.max_bytes // SmqQueue.max_messages
    assert dead["MessageRetentionPeriod"] == 604800, "dead letters are kept as long as SMQ allows"
    assert refresh["MessageRetentionPeriod"] > sum(redelivery.RETRY_DELAYS_SECONDS) + 5 * timeout


@pytest.mark.parametrize(
    ("function", "queues"), [(HTTP, ["refreshQueueName"]), (WORKER, ["refreshQueueName", "deadLetterQueueName"])]
)
def test_the_queue_urls_are_what_the_library_parses(doc: dict[str, Any], function: str, queues: list[str]) -> None:
    environment = deployed_environment(doc, function)
    urls = [environment[v] for v in ("REFRESH_QUEUE_URL", "REFRESH_DLQ_URL") if v in environment]
    names = [parse_queue_url(url)[1] for url in urls]
    assert names == [doc["vars"][v] for v in queues], "the HTTP function sends to the refresh queue only"
    for url in urls:
        endpoint, _ = parse_queue_url(url)
        assert endpoint == doc["vars"]["smqEndpoint"] == f"https://{ACCOUNT}.mns.{doc['vars']['region']}.aliyuncs.com"
    if function == WORKER:  # what the worker builds at its first invocation
        settings = Settings.from_env(environment)
        assert [q.name for q in redelivery.redelivery_queues(settings)] == names


def test_the_worker_is_triggered_by_the_refresh_queue_as_designed(doc: dict[str, Any]) -> None:
    trigger = worker_trigger(doc)
    refresh_name, _ = queue_resource(doc, "refreshQueueName")
    dead_name, _ = queue_resource(doc, "deadLetterQueueName")
    source = trigger["eventSourceConfig"]["eventSourceParameters"]["sourceMNSParameters"]
    assert trigger["eventSourceConfig"]["eventSourceType"] == "MNS"
    assert output_of(doc, source["QueueName"]) == {"Fn::GetAtt": [refresh_name, "QueueName"]}
    assert source["RegionId"] == functions(doc)[WORKER]["region"], "an SMQ trigger's queue is in the function's region"
    assert source["IsBase64Decode"] is False, "our bodies are plain JSON; the worker decodes base64 ones itself"
    assert trigger["triggerEnable"] is True and trigger["asyncInvocationType"] is False
    assert json.loads(trigger["eventRuleFilterPattern"]) == {}
    assert trigger["eventSinkConfig"]["deliveryOption"] == {"mode": "event-streaming", "eventSchema": "CloudEvents"}
    run = trigger["runOptions"]
    assert run["mode"] == "event-streaming" and run["errorsTolerance"] == "ALL"
    assert output_of(doc, run["deadLetterQueue"]["Arn"]) == {"Fn::GetAtt": [dead_name, "ARN.WithSlash"]}
    # a whole failed batch is re-sent in one BatchSendMessage; the window is within the trigger's 0-15 s
    assert 1 <= run["batchWindow"]["CountBasedWindow"] <= SmqQueue.max_messages
    assert 1 <= run["batchWindow"]["TimeBasedWindow"] <= 15
    # BACKOFF_RETRY retries at most 3 times, 10-20 s apart: within the duplicate skip's interval
    assert run["retryStrategy"]["PushRetryStrategy"] == "BACKOFF_RETRY"
    assert 1 <= run["retryStrategy"]["MaximumRetryAttempts"] <= 3
    assert run["retryStrategy"]["MaximumRetryAttempts"] * 20 <= doc["vars"]["refreshMinIntervalSeconds"]
    raw_run = raw()["resources"][WORKER]["props"]["triggers"][0]["triggerConfig"]["runOptions"]
    assert raw_run["maximumTasks"] == "${vars.workerMaxInstances}", "no push may be throttled by the function's cap"


def test_queue_trigger_gives_local_runs_s_yamls_numbers(doc: dict[str, Any]) -> None:
    trigger, run = s_yaml.queue_trigger(doc), worker_trigger(doc)["runOptions"]
    assert trigger == s_yaml.queue_trigger()  # the environment and the account change none of them
    assert trigger == s_yaml.QueueTrigger(
        batch_size=run["batchWindow"]["CountBasedWindow"],
        batch_window_seconds=run["batchWindow"]["TimeBasedWindow"],
        retry_attempts=run["retryStrategy"]["MaximumRetryAttempts"],
        is_base64_decode=False,
        worker_timeout_seconds=doc["vars"]["workerTimeout"],
        worker_max_instances=doc["vars"]["workerMaxInstances"],
        visibility_timeout_seconds=doc["vars"]["refreshVisibilityTimeout"],
    )
    assert s_yaml.worker_function(doc)["handler"] == s_yaml.http_function(doc)["handler"] == "app.handler"


def test_the_guide_tells_the_redelivery_the_worker_does() -> None:
    guide = GUIDE.read_text()
    delays = "/".join(str(d) for d in redelivery.RETRY_DELAYS_SECONDS)
    assert f"{delays} s" in guide, f"the guide should give the re-send delays as {delays} s"
    assert f"{redelivery.MAX_ATTEMPTS} attempts" in guide
    assert "IsBase64Decode: false" in guide
    not_yet = guide.split("## What is not there yet", 1)[1].split("\n## ", 1)[0]
    assert "REFRESH_QUEUE_URL" not in not_yet and "worker" not in not_yet, "the queue is there now"


def serverless_devs() -> str | None:
    return os.environ.get("SERVERLESS_DEVS_S") or shutil.which("s")


@pytest.mark.skipif(not serverless_devs(), reason="Serverless Devs not installed (npm install -g @serverless-devs/s)")
def test_s_preview_renders_what_this_test_checks(doc: dict[str, Any], tmp_path: Path) -> None:
    """`s preview` works offline once an access exists: a made-up key renders config('AccountID')."""
    s = str(serverless_devs())
    env = {**os.environ, **ENVIRONMENT, "HOME": str(tmp_path)}
    access = ["config", "add", "-a", "default", "-f", "--AccountID", ACCOUNT, "--AccessKeyID", "LTAI0000000000000000"]
    subprocess.run([s, *access, "--AccessKeySecret", "x"], cwd=ROOT, env=env, check=True, capture_output=True)
    preview = [s, "preview", "-o", "json"]
    run = subprocess.run(preview, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    start = re.search(r"^\{", run.stdout, re.MULTILINE)  # after a warning line when run as root
    assert start, run.stdout
    previewed = json.loads(run.stdout[start.start() :])
    assert previewed["resources"] == doc["resources"]
    jsonschema.validate(previewed, SCHEMA, cls=jsonschema.Draft7Validator)
