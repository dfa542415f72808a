"""s.yaml declares what SPEC and docs/deploy-fc.md promise on Function Compute: the handlers that exist, the layer
that `make build-fc` writes, configuration the library reads, a role per function that can do what its function
does and nothing else, a private cache that expires, the refresh queue, its dead-letter queue and the worker's SMQ
trigger, signed requests by default, and one shared CAMS budget in a Tablestore table for both functions (no static
shares): the HTTP function uncapped, the worker capped by one number, for its cost.

The file is checked once its variables are substituted (by waba_local.build.s_yaml, and by Serverless Devs' own
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

from waba_local.build import build_fc, s_yaml
from waba_local.build.s_yaml import HTTP, WORKER, functions, output_of, raw, ros_resources
from waba_lookup.budget.shared import SharedBudget
from waba_lookup.budget.tablestore import TablestoreLogStore
from waba_lookup.compose import budget_for
from waba_lookup.queue import redelivery
from waba_lookup.queue.smq import SmqQueue, parse_queue_url
from waba_lookup.settings import CAMS_MAX_QPS, Settings

ROOT = Path(__file__).resolve().parents[2]
S_YAML = ROOT / "s.yaml"
GUIDE = ROOT / "docs" / "deploy-fc.md"
OPERATIONS = ROOT / "docs" / "operations-fc.md"
SCHEMA = json.loads(Path(__file__).with_name("s_yaml.schema.json").read_text())
ACCOUNT = s_yaml.ACCOUNT
ENVIRONMENT = {"WABA_LAYER_VERSION": "3"}  # what the deployer exports (docs/deploy-fc.md)
# Read by Function Compute or by Powertools itself, not by the library.
PLATFORM_VARIABLES = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_LOG_LEVEL"}
FC_VARIABLES = {"FC_REGION": "ap-southeast-1"}
SEND = ["mns:BatchSendMessage", "mns:SendMessage"]
BUDGET = ["ots:GetRow", "ots:PutRow", "ots:UpdateRow"]  # what TablestoreLogStore calls, and nothing else


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    """s.yaml with its variables substituted."""
    return s_yaml.rendered(S_YAML, ENVIRONMENT, ACCOUNT)


def deployed_environment(document: dict[str, Any], function: str) -> dict[str, str]:
    """A function's environment as FC will give it: the stack's outputs filled in, FC's own variables added."""
    return s_yaml.deployed_environment(document, function, FC_VARIABLES)


def statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]


def actions(statement: dict[str, Any]) -> list[str]:
    """A statement's actions, one or a list."""
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def queue_resource(document: dict[str, Any], variable: str) -> tuple[str, dict[str, Any]]:
    """The ROS queue named by a var (refreshQueueName, deadLetterQueueName): its logical name and properties."""
    queues = ros_resources(document, "ALIYUN::MNS::Queue")
    ((name, queue),) = [(n, q) for n, q in queues.items() if q["Properties"]["QueueName"] == document["vars"][variable]]
    return name, queue["Properties"]


def budget_resources(document: dict[str, Any]) -> tuple[str, dict[str, Any], str, dict[str, Any]]:
    """The Tablestore instance and table of the stack: logical names and properties."""
    ((instance_name, instance),) = ros_resources(document, "ALIYUN::OTS::InstanceV2").items()
    ((table_name, table),) = ros_resources(document, "ALIYUN::OTS::Table").items()
    return instance_name, instance["Properties"], table_name, table["Properties"]


def function_role(document: dict[str, Any], props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The ROS role a function's `role` names: its logical name and resource."""
    roles = ros_resources(document, "ALIYUN::RAM::Role")
    ((name, role),) = [
        (n, r) for n, r in roles.items() if output_of(document, props["role"]) == {"Fn::GetAtt": [n, "Arn"]}
    ]
    return name, role


def logstore_arn(document: dict[str, Any], props: dict[str, Any]) -> str:
    """acs:log:<region>:<account>:project/<project>/logstore/<logstore> of the stack's logstore a function's
    logConfig names."""
    (project,) = [
        p["Properties"]["Name"]
        for n, p in ros_resources(document, "ALIYUN::SLS::Project").items()
        if output_of(document, props["logConfig"]["project"]) == {"Fn::GetAtt": [n, "Name"]}
    ]
    ((name, logstore),) = [
        (n, s["Properties"])
        for n, s in ros_resources(document, "ALIYUN::SLS::Logstore").items()
        if output_of(document, props["logConfig"]["logstore"]) == {"Fn::GetAtt": [n, "LogstoreName"]}
    ]
    assert output_of(document, props["logConfig"]["project"]) == logstore["ProjectName"], f"{name}: another project"
    region = document["resources"][INFRA]["props"]["region"]  # the stack's, where the logstore is
    return f"acs:log:{region}:{ACCOUNT}:project/{project}/logstore/{logstore['LogstoreName']}"


def worker_trigger(document: dict[str, Any]) -> dict[str, Any]:
    (trigger,) = [t for t in functions(document)[WORKER]["triggers"] if t["triggerType"] == "eventbridge"]
    return dict(trigger["triggerConfig"])


def test_s_yaml_validates_against_the_schema(doc: dict[str, Any]) -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.validate(doc, SCHEMA, cls=jsonschema.Draft7Validator)


TRIGGER = ("props", "triggers", 0, "triggerConfig")
RUN = (*TRIGGER, "runOptions")
INFRA = "waba_infra"
BUDGET_RESOURCE = ("props", "template", "Resources", "BudgetInstance")
BUDGET_INSTANCE = (*BUDGET_RESOURCE, "Properties")
INDEX = ("props", "template", "Resources", "LogIndex", "Properties")
ALERT = ("props", "template", "Resources", "BudgetStoreAlert", "Properties")
ASYNC_DESTINATION = ("props", "asyncInvokeConfig", "destinationConfig", "onFailure")
BUDGET_TABLE = ("props", "template", "Resources", "BudgetTable", "Properties")
REFRESH_QUEUE = ("props", "template", "Resources", "RefreshQueue", "Properties")


@pytest.mark.parametrize(
    ("resource", "path", "value"),
    [
        (HTTP, ("props", "memorySize"), 500),  # not a multiple of 64
        (HTTP, ("props", "runtime"), "python3.10"),
        (HTTP, ("props", "environmentVariables", "CAMS_QPS_BUDGET"), 5),  # FC takes strings
        (HTTP, ("props", "environmentVariables", "ALIBABA_CLOUD_ACCESS_KEY_ID"), "LTAI5tExample"),
        (HTTP, (*TRIGGER, "authType"), "anonymous"),
        (HTTP, (*TRIGGER, "authType"), "jwt"),  # without its authConfig
        (WORKER, ("props", "concurrencyConfig", "reservedConcurrency"), "2"),
        (HTTP, ("props", "memory"), 512),  # a misspelt property fc3 would ignore
        (HTTP, ("props", "instanceConcurrency"), 2),  # the library's per-instance state takes one request at a time
        (WORKER, ("props", "instanceConcurrency"), 10),
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
        (INFRA, (*BUDGET_INSTANCE, "NetworkTypeACL"), ["VPC", "CLASSIC"]),  # the functions come over the internet
        (INFRA, (*BUDGET_INSTANCE, "Network"), "NORMAL"),  # InstanceV2 has no Network: its ACL says it
        (INFRA, (*BUDGET_RESOURCE, "Type"), "ALIYUN::OTS::Instance"),  # cannot set the network ACL
        (WORKER, (*RUN, "maximumTasks"), 2),  # not in FC 3.0's RunOptions
        (WORKER, (*TRIGGER, "eventSinkConfig", "deliveryOption", "mode"), "event-streaming"),  # nor DeliveryOption's
        (WORKER, (*RUN, "retryStrategy", "PushRetryStrategy"), "BACKOFF_RETRY"),  # dead-letters throttled pushes
        (WORKER, (*RUN, "retryStrategy", "MaximumRetryAttempts"), 177),
        (WORKER, ("props", "asyncInvokeConfig", "maxAsyncRetryAttempts"), 9),  # FC's most is 8
        (WORKER, (*ASYNC_DESTINATION, "destination"), "acs:mns:ap-southeast-1:1:/queues/dlq"),  # not its messages
        (
            HTTP,
            ("props", "customDomain"),
            {"domainName": "api.example.com", "protocol": "HTTPS", "route": {"path": "/*"}},
        ),
        (INFRA, (*INDEX, "KeyIndices", 0, "Type"), "string"),
        (INFRA, (*ALERT, "Detail", "Configuration", "PolicyConfiguration", "ActionPolicyId"), ""),
        (INFRA, (*ALERT, "Detail", "Configuration", "QueryList", 0, "Query"), "shared and budget"),  # no count
        (INFRA, (*BUDGET_INSTANCE, "InstanceName"), "Waba-Lookup"),  # RAM names instances in lowercase
        (INFRA, (*BUDGET_INSTANCE, "InstanceName"), "ots-budget"),  # a word Tablestore refuses
        (INFRA, (*BUDGET_INSTANCE, "InstanceName"), "waba-lookup-budget"),  # 18 characters
        (INFRA, (*BUDGET_INSTANCE, "ClusterType"), "VCU"),
        (INFRA, (*BUDGET_TABLE, "TableName"), "cams-budget"),  # letters, digits and _ only
        (INFRA, (*BUDGET_TABLE, "MaxVersions"), 2),
        (INFRA, (*BUDGET_TABLE, "TimeToLive"), 86400),  # the row would vanish
        (INFRA, (*BUDGET_TABLE, "ReservedThroughput", "Read"), 1),  # billed every hour, used or not
        (INFRA, (*BUDGET_TABLE, "PrimaryKey", 0, "Type"), "TEXT"),
        (INFRA, (*BUDGET_TABLE, "TTL"), -1),  # a misspelt property
        (INFRA, (*REFRESH_QUEUE, "KmsKeyId"), "key-id"),  # ROS's ALIYUN::MNS::Queue has no encryption property
        (INFRA, (*REFRESH_QUEUE, "VisibilityTimeout"), 43201),  # SMQ's most is 12 h
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
    # and both take permits from the budget table: its row only, in that table only
    table = (
        f"acs:ots:{region}:{ACCOUNT}:instance/{doc['vars']['tablestoreInstance']}/table/{doc['vars']['budgetTable']}"
    )
    common.append((BUDGET, [table]))
    # and Function Compute ships their logs with them, to the stack's logstore
    logstore = f"acs:log:{region}:{ACCOUNT}:project/{doc['vars']['logProject']}/logstore/{doc['vars']['logstore']}"
    common.append((["log:PostLogStoreLogs"], [logstore]))
    # the HTTP function sends refreshes; the worker re-sends and dead-letters. Neither receives: the trigger does.
    expected = {HTTP: [*common, (SEND, [queue])], WORKER: [*common, (SEND, [queue, dead])]}
    roles = ros_resources(doc, "ALIYUN::RAM::Role")
    assert not ros_resources(doc, "ALIYUN::RAM::AttachPolicyToRole"), "no system policy: they grant too much"
    assert len(roles) == len(expected), "one role per function, and no role for the trigger (fc3 uses EventBridge's)"
    for function, props in functions(doc).items():
        role_name, role = function_role(doc, props)
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


def test_ots_resources_are_the_budget_table_only(doc: dict[str, Any]) -> None:
    """acs:ots:<region>:<account>:instance/<instance>/table/<table> (Tablestore's RAM reference), the instance in
    lowercase; never a wildcard, another table or the whole instance."""
    _, instance, _, table = budget_resources(doc)
    arn = f"acs:ots:{doc['vars']['region']}:{ACCOUNT}:instance/{instance['InstanceName']}/table/{table['TableName']}"
    roles = ros_resources(doc, "ALIYUN::RAM::Role")
    for role_name, role in roles.items():
        ots = [s for s in statements(role) if any(a.startswith("ots:") for a in s["Action"])]
        assert len(ots) == 1, f"{role_name}: one statement for Tablestore"
        assert sorted(ots[0]["Action"]) == BUDGET and ots[0]["Resource"] == [arn]
        assert instance["InstanceName"] == instance["InstanceName"].lower(), "RAM names the instance in lowercase"
        assert "*" not in arn
        others = [r for s in statements(role) if s is not ots[0] for r in s["Resource"]]
        assert not [r for r in others if r.startswith("acs:ots:")], f"{role_name}: Tablestore beyond the table"


def test_the_budget_table_is_declared_as_the_library_uses_it(doc: dict[str, Any]) -> None:
    instance_name, instance, table_name, table = budget_resources(doc)
    # an instance the VPC-less functions reach over the internet (new instances refuse it unless the ACL says so),
    # paid per request
    assert instance["InstanceName"] == doc["vars"]["tablestoreInstance"]
    assert "INTERNET" in instance["NetworkTypeACL"], "the functions have no VPC: the ACL must let the internet in"
    assert instance["ClusterType"] == "HYBRID", "a capacity instance: the cheapest reads, writes and storage"
    # the table: TablestoreLogStore's one string key `pk`, one version rewritten in place, never expiring
    assert table["InstanceName"] == {"Fn::GetAtt": [instance_name, "InstanceName"]}, "created after its instance"
    assert table["TableName"] == doc["vars"]["budgetTable"]
    assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", table["TableName"])
    store = TablestoreLogStore("https://x", "x", table["TableName"], "scope")
    ((key, _),) = store.primary_key
    assert table["PrimaryKey"] == [{"Name": key, "Type": "STRING"}]
    assert table["MaxVersions"] == 1 and table["TimeToLive"] == -1
    assert table.get("ReservedThroughput", {"Read": 0, "Write": 0}) == {"Read": 0, "Write": 0}
    # the functions are given that table, on that instance, at that instance's endpoint
    region = doc["vars"]["region"]
    for function, props in functions(doc).items():
        variables = props["environmentVariables"]
        assert output_of(doc, variables["CAMS_BUDGET_TABLE"]) == {"Fn::GetAtt": [table_name, "TableName"]}
        assert output_of(doc, variables["TABLESTORE_INSTANCE"]) == {"Fn::GetAtt": [instance_name, "InstanceName"]}
        environment = deployed_environment(doc, function)
        assert environment["CAMS_BUDGET_TABLE"] == table["TableName"]
        assert environment["TABLESTORE_INSTANCE"] == instance["InstanceName"]
        # the public endpoint over HTTPS: reachable from a function without a VPC (docs/deploy-fc.md)
        assert environment["TABLESTORE_ENDPOINT"] == f"https://{instance['InstanceName']}.{region}.ots.aliyuncs.com"


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


def test_removing_the_stack_removes_the_cache_bucket_with_its_entries(doc: dict[str, Any]) -> None:
    """`s remove` deletes the stack, and ROS deletes a bucket that still holds objects only with DeletionForce (false
    by default). The cache holds only what CAMS gives again, and without versioning no old version outlives
    DeletionForce, so the guide's removal needs no step of its own for the bucket."""
    ((name, bucket),) = ros_resources(doc, "ALIYUN::OSS::Bucket").items()
    properties = bucket["Properties"]
    assert properties.get("DeletionForce") is True, f"{name}: `s remove` would stop at a non-empty bucket"
    assert "VersioningConfiguration" not in properties, "old versions: the guide would need to say how to delete them"
    removing = GUIDE.read_text().split("### Removing it", 1)[1].split("\n#", 1)[0]
    assert "DeletionForce" in removing and "ossutil rm" not in removing


def test_each_role_may_write_its_functions_logs_to_its_logstore_only(doc: dict[str, Any]) -> None:
    """A function with a role of its own ships its logs with that role: fc3 creates the service-linked role
    AliyunServiceRoleForFC only for a function without one. log:PostLogStoreLogs on the logstore its logConfig names
    is the least privilege for that (Serverless Devs' FC docs); no other SLS action, and no other logstore."""
    for function, props in functions(doc).items():
        role_name, role = function_role(doc, props)
        arn = logstore_arn(doc, props)
        logs = [s for s in statements(role) if any(a == "*" or a.startswith("log:") for a in actions(s))]
        assert logs == [{"Effect": "Allow", "Action": ["log:PostLogStoreLogs"], "Resource": [arn]}], (
            f"{function}: {role_name} should ship its logs to {arn}, and do nothing else in SLS"
        )


def test_logs_go_to_the_stacks_logstore(doc: dict[str, Any]) -> None:
    ((name, logstore),) = ros_resources(doc, "ALIYUN::SLS::Logstore").items()
    assert logstore["Properties"]["TTL"] == 30
    assert ros_resources(doc, "ALIYUN::SLS::Index"), "the console's log queries need an index"
    for props in functions(doc).values():
        assert output_of(doc, props["logConfig"]["logstore"]) == {"Fn::GetAtt": [name, "LogstoreName"]}
        assert "Fn::GetAtt" in output_of(doc, props["logConfig"]["project"])


def test_the_http_trigger_takes_signed_requests_by_default() -> None:
    document = raw()
    assert document["vars"]["httpTrigger"] == "${vars.httpTriggerFunction}"
    assert document["vars"]["httpTriggerFunction"]["authType"] == "function"
    (trigger,) = document["resources"][HTTP]["props"]["triggers"]
    assert trigger["triggerConfig"] == "${vars.httpTrigger}"
    assert {"GET", "POST"} <= set(document["vars"]["httpTriggerFunction"]["methods"])


def test_the_jwt_trigger_is_one_word_away_and_valid(doc: dict[str, Any]) -> None:
    """httpTriggerJwt is the JWT variant (fc3's IHttpTriggerConfig authConfig); choosing it changes only the auth."""
    jwt, signed = doc["vars"]["httpTriggerJwt"], doc["vars"]["httpTriggerFunction"]
    assert jwt["authType"] == "jwt" and jwt["authConfig"]["tokenLookup"].startswith("header:Authorization:Bearer")
    assert {k: v for k, v in jwt.items() if k not in ("authType", "authConfig")} == {
        k: v for k, v in signed.items() if k != "authType"
    }
    with_jwt = copy.deepcopy(doc)
    with_jwt["resources"][HTTP]["props"]["triggers"][0]["triggerConfig"] = jwt
    jsonschema.validate(with_jwt, SCHEMA, cls=jsonschema.Draft7Validator)
    # the guide's curl recipe sends the token where tokenLookup reads it
    assert re.search(r"curl .*-H \"Authorization: Bearer \$TOKEN\"", GUIDE.read_text())


def test_the_guides_custom_domain_is_valid_and_never_anonymous(doc: dict[str, Any]) -> None:
    (block,) = re.findall(r"```yaml\n(\s*customDomain:\n.*?)\s*```", GUIDE.read_text(), re.DOTALL)
    domain = yaml.safe_load(textwrap.dedent(block))["customDomain"]
    assert domain["authConfig"]["authType"] in ("function", "jwt"), "a domain without authConfig is open to all"
    with_domain = copy.deepcopy(doc)
    with_domain["resources"][HTTP]["props"]["customDomain"] = domain
    jsonschema.validate(with_domain, SCHEMA, cls=jsonschema.Draft7Validator)
    assert "customDomain" not in raw()["resources"][HTTP]["props"], "an option: fcapp.run by default"


def test_the_http_function_has_no_reserved_concurrency() -> None:
    """The shared budget is the quota, not the HTTP function's concurrency (SPEC, Quota): reads, cache hits above all,
    scale with Function Compute, and one instance alone may use the whole idle budget. A cap would only reject
    requests beyond it (Function Compute's own 429, cache hits too)."""
    props = raw()["resources"][HTTP]["props"]
    assert "concurrencyConfig" not in props
    assert "CAMS_MAX_INSTANCES" not in props["environmentVariables"]


def test_each_instance_serves_one_request_at_a_time(doc: dict[str, Any]) -> None:
    """instanceConcurrency 1 on both functions: the budget's state in an instance (its place in line; without the
    table, its own log) and the credentials read at each call are kept per instance, without locks. Function Compute
    3.0's built-in runtimes serve one request per instance anyway (only custom runtimes take more): the pin keeps it
    so."""
    for function in (HTTP, WORKER):
        assert raw()["resources"][function]["props"].get("instanceConcurrency") == 1, function
        assert functions(doc)[function]["instanceConcurrency"] == 1, function


def test_the_workers_cap_is_one_number_for_its_cost(doc: dict[str, Any]) -> None:
    """One number: the worker's reserved concurrency and its trigger's maximumTasks. It bounds cost, not the quota."""
    props = raw()["resources"][WORKER]["props"]
    assert props["concurrencyConfig"]["reservedConcurrency"] == "${vars.workerMaxInstances}"
    assert functions(doc)[WORKER]["concurrencyConfig"]["reservedConcurrency"] == doc["vars"]["workerMaxInstances"]


def test_no_static_share_is_deployed_beside_the_table(doc: dict[str, Any]) -> None:
    """CAMS_MAX_INSTANCES sizes an instance's own budget without a table only: with one it is unused, so neither
    function gets it."""
    for function in (HTTP, WORKER):
        environment = deployed_environment(doc, function)
        assert environment["CAMS_BUDGET_TABLE"] and "CAMS_MAX_INSTANCES" not in environment, function


def test_both_functions_share_one_budget(doc: dict[str, Any]) -> None:
    """One deployment-wide budget in one Tablestore row: both functions get the same budget, reserve and table, and
    the same account scope (the row's key), so they take permits from the same record."""
    raw_functions = raw()["resources"]
    for function in (HTTP, WORKER):
        variables = raw_functions[function]["props"]["environmentVariables"]
        assert variables["CAMS_QPS_BUDGET"] == "${str('vars.camsQpsBudget')}", "one budget, not one per function"
        assert variables["CAMS_INTERACTIVE_RESERVE"] == "${str('vars.interactiveReserve')}"
    shared = {f: Settings.from_env(deployed_environment(doc, f)) for f in functions(doc)}
    for function, settings in shared.items():
        assert settings.on_fc and settings.cache_backend == "oss"
        assert settings.cams_qps_budget == doc["vars"]["camsQpsBudget"] <= CAMS_MAX_QPS
        assert 0 <= settings.cams_interactive_reserve == doc["vars"]["interactiveReserve"] < settings.cams_qps_budget
        budget = budget_for(settings)
        assert isinstance(budget, SharedBudget) and not budget.local, f"{function}: its own log, not the shared one"
        assert (budget.policy.budget, budget.policy.reserve) == (
            settings.cams_qps_budget,
            settings.cams_interactive_reserve,
        )
        store = budget.store
        assert isinstance(store, TablestoreLogStore)
        assert (store.endpoint, store.instance, store.table) == (
            settings.tablestore_endpoint,
            settings.tablestore_instance,
            settings.cams_budget_table,
        )
    http, worker = shared[HTTP], shared[WORKER]
    assert (http.cams_budget_table, http.tablestore_instance, http.tablestore_endpoint) == (
        worker.cams_budget_table,
        worker.tablestore_instance,
        worker.tablestore_endpoint,
    )
    assert http.account_scope == worker.account_scope, "the two functions would keep two records"


def test_the_guides_http_cap_is_valid(doc: dict[str, Any]) -> None:
    """The optional cap (docs/deploy-fc.md): reserved concurrency alone, for cost; the budget stays the shared one."""
    (block,) = re.findall(r"```yaml\n(\s*waba_http:\n.*?)\s*```", GUIDE.read_text(), re.DOTALL)
    cap = yaml.safe_load(textwrap.dedent(block))["waba_http"]["props"]
    assert set(cap) == {"concurrencyConfig"}, "a cap needs no CAMS_MAX_INSTANCES beside the table"
    capped = copy.deepcopy(doc)
    capped["resources"][HTTP]["props"]["concurrencyConfig"] = cap["concurrencyConfig"]
    jsonschema.validate(capped, SCHEMA, cls=jsonschema.Draft7Validator)
    budget = budget_for(Settings.from_env(deployed_environment(capped, HTTP)))
    assert isinstance(budget, SharedBudget) and not budget.local, "still the shared budget: the cap is not the quota"


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
    assert trigger["eventSinkConfig"]["deliveryOption"] == {"eventSchema": "CloudEvents"}
    run = trigger["runOptions"]
    assert run["mode"] == "event-streaming" and run["errorsTolerance"] == "ALL"
    assert "maximumTasks" not in run, "FC 3.0's RunOptions has none: the worker's cap is its reserved concurrency"
    assert output_of(doc, run["deadLetterQueue"]["Arn"]) == {"Fn::GetAtt": [dead_name, "ARN.WithSlash"]}
    # a whole failed batch is re-sent in one BatchSendMessage; the window is within the trigger's 0-15 s
    assert 1 <= run["batchWindow"]["CountBasedWindow"] <= SmqQueue.max_messages
    assert 1 <= run["batchWindow"]["TimeBasedWindow"] <= 15


def test_a_throttled_push_is_retried_not_dead_lettered(doc: dict[str, Any]) -> None:
    """Nothing caps the trigger's pushes but the worker's reserved concurrency, so a push can meet FC's throttling
    while the capped instances run 60 s batches. EXPONENTIAL_DECAY_RETRY retries it 176 times over about a day
    (EventBridge's retry policies); BACKOFF_RETRY's 3 retries 10-20 s apart would dead-letter it in under a minute."""
    retry = worker_trigger(doc)["runOptions"]["retryStrategy"]
    assert retry["PushRetryStrategy"] == "EXPONENTIAL_DECAY_RETRY"
    assert retry["MaximumRetryAttempts"] == 176 and retry["MaximumEventAgeInSeconds"] == 86400
    # the backoff outlasts the longest wait for a free instance: every capped instance's batch ending
    exponential = sum(min(2**n, 512) for n in range(retry["MaximumRetryAttempts"]))
    assert exponential >= doc["vars"]["workerTimeout"] * doc["vars"]["workerMaxInstances"]
    assert "the worker's reserved concurrency" in GUIDE.read_text()


def test_an_asynchronous_invocation_loses_nothing(doc: dict[str, Any]) -> None:
    """If the trigger invokes asynchronously after all, Function Compute retries and then sends the batch to the same
    dead-letter queue, with the worker's role, which may send there and nowhere else it should not."""
    props = functions(doc)[WORKER]
    config = props["asyncInvokeConfig"]
    assert 1 <= config["maxAsyncRetryAttempts"] <= 8
    assert (
        config["maxAsyncEventAgeInSeconds"]
        >= worker_trigger(doc)["runOptions"]["retryStrategy"]["MaximumEventAgeInSeconds"]
    ), "as long as the trigger would have retried"
    destination = config["destinationConfig"]["onFailure"]["destination"]
    region = doc["vars"]["region"]
    assert destination == f"acs:mns:{region}:{ACCOUNT}:/queues/{doc['vars']['deadLetterQueueName']}/messages"
    _, role = function_role(doc, props)
    assert any(destination in s["Resource"] and "mns:SendMessage" in actions(s) for s in statements(role))
    assert "onSuccess" not in config["destinationConfig"], "a success needs no record"
    assert "asyncInvokeConfig" not in functions(doc)[HTTP], "the HTTP function is only invoked synchronously"


def test_the_trigger_is_synchronous_with_its_evidence_cited() -> None:
    """false is synchronous by the field's name, FC 2.0's API, FC 3.0's reference before 2026 and its SDKs, and fc3's
    own e2e tests; the comment above the value says so, and the guide tells how to check it after deploying."""
    text = S_YAML.read_text()
    comment = text.split("asyncInvocationType: false", 1)[0].rsplit("triggerEnable: true", 1)[1]
    for evidence in ("2021-04-06", "fc20230330", "devsapp/fc3", "__tests__/e2e/trigger/eb/s.yaml"):
        assert evidence in comment, f"the comment should cite {evidence}"
    assert raw()["resources"][WORKER]["props"]["triggers"][0]["triggerConfig"]["asyncInvocationType"] is False
    assert "invocation type" in GUIDE.read_text()


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
    not_yet = guide.split("## What is not there yet", 1)[1].split("\n## ", 1)[0] if "not there yet" in guide else ""
    assert "REFRESH_QUEUE_URL" not in not_yet and "worker" not in not_yet, "the queue is there now"
    assert "CAMS_BUDGET_TABLE" not in not_yet and "Tablestore" not in not_yet, "the shared budget is there now"


def logged_messages() -> set[str]:
    """The messages the library and the handlers log (logger.info/warning/error/exception), as written."""
    paths = [*(ROOT / "layers" / "waba_lookup").rglob("*.py"), *(ROOT / "functions").rglob("app.py")]
    found = re.findall(r'logger\.\w+\(\s*f?"([^"]+)"', "\n".join(p.read_text() for p in paths))
    return {m.replace("{operation}", "read") for m in found}


ALERTS = {  # what each alert must look for: the library's own words, or FC's request metrics
    "dead-letters": ["unprocessable message"],
    "worker-errors": [],
    "budget-store-unavailable": ["shared CAMS budget unreachable: no CAMS call"],
    "cache-failures": ["signed cache read failed", "cache read failed"],
    "http-5xx": ["unexpected failure"],
}


def test_the_alerts_search_for_what_the_functions_log(doc: dict[str, Any]) -> None:
    alerts = {a["Properties"]["Detail"]["Name"]: a for a in ros_resources(doc, "ALIYUN::SLS::Alert").values()}
    assert set(alerts) == {f"{doc['vars']['name']}-{n}" for n in ALERTS}
    messages = logged_messages()
    for name, phrases in ALERTS.items():
        detail = alerts[f"{doc['vars']['name']}-{name}"]["Properties"]["Detail"]
        (query,) = [q["Query"] for q in detail["Configuration"]["QueryList"]]
        assert f"-{name.split('-')[0]}" in query or "message.message" in query, name
        for phrase in phrases:
            assert phrase in query, f"{name} should look for {phrase!r}"
            assert any(m.startswith(phrase) or phrase in m for m in messages), f"nothing logs {phrase!r} any more"
        # each column the condition reads is one the query selects
        condition = detail["Configuration"]["SeverityConfigurations"][0]["EvalCondition"]["Condition"]
        columns = set(re.findall(r" as (\w+)", query))
        assert set(re.findall(r"[a-z_]+", condition)) <= columns, f"{name}: {condition} reads what it does not select"
        assert detail["Configuration"]["QueryList"][0]["Store"] == doc["vars"]["logstore"]
        assert detail["Configuration"]["PolicyConfiguration"]["ActionPolicyId"] == doc["vars"]["alertActionPolicy"]
        assert name in OPERATIONS.read_text(), f"docs/operations-fc.md should say what {name} means"


def test_the_logstore_indexes_the_fields_the_logs_carry(doc: dict[str, Any]) -> None:
    """FC writes each stdout line as `message`; ours are Powertools JSON, so `message` is a JSON index whose keys are
    the ones the library writes (level, message, and the extras the alerts and the dashboard read)."""
    ((_, index),) = ros_resources(doc, "ALIYUN::SLS::Index").items()
    keys = {k["Name"]: k for k in index["Properties"]["KeyIndices"]}
    assert {"functionName", "hasFunctionError", "message"} <= set(keys), "FC's fields, and our JSON line"
    assert keys["message"]["Type"] == "json"
    json_keys = {k["Name"]: k["Type"] for k in keys["message"]["JsonKeyIndices"]}
    assert {"level", "message", "cache", "code", "status", "function_name"} <= set(json_keys)
    assert json_keys["status"] == "long", "the 5xx alert compares it as a number"
    source = "\n".join(p.read_text() for p in (ROOT / "functions").rglob("app.py"))
    for extra in ("status", "code", "reason", "message_id"):
        assert f'"{extra}"' in source  # the handlers' own extras
    assert index["Properties"]["FullTextIndex"]["Enable"] is True


def test_the_dashboard_has_the_operators_panels(doc: dict[str, Any]) -> None:
    ((_, dashboard),) = ros_resources(doc, "ALIYUN::SLS::Dashboard").items()
    charts = {c["title"]: c for c in dashboard["Properties"]["Charts"]}
    assert set(charts) == {
        "Requests by X-Cache",
        "CAMS calls a second, against the budget",
        "Permit waits",
        "429, 503 and 5xx answers",
    }
    assert (
        f"{doc['vars']['camsQpsBudget']} as budget"
        in charts["CAMS calls a second, against the budget"]["search"]["query"]
    )
    for chart in charts.values():
        assert chart["search"]["logstore"] == doc["vars"]["logstore"]
        selected = set(re.findall(r" as (\w+)", chart["search"]["query"]))
        assert set(chart["display"]["xAxis"]) | set(chart["display"]["yAxis"]) <= selected, chart["title"]


def test_the_guide_tells_the_variables_the_functions_read() -> None:
    guide = GUIDE.read_text()
    for variable in ("CAMS_BUDGET_TABLE", "TABLESTORE_ENDPOINT", "TABLESTORE_INSTANCE", "CAMS_INTERACTIVE_RESERVE"):
        assert variable in guide
    assert "NetworkTypeACL" in guide and "Request denied by instance ACL policies" in guide


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
