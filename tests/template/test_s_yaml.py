"""s.yaml declares what SPEC and docs/deploy-fc.md promise on Function Compute: the handler that exists, the layer
that `make build-fc` writes, configuration the library reads, a role that can do two things, a private cache that
expires, signed requests by default, and one number for both the instance cap and the static shares.

The file is checked once its variables are substituted (by a small renderer here, and by Serverless Devs' own
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

from waba_local import build_fc
from waba_lookup.settings import CAMS_MAX_QPS, Settings

ROOT = Path(__file__).resolve().parents[2]
S_YAML = ROOT / "s.yaml"
SCHEMA = json.loads(Path(__file__).with_name("s_yaml.schema.json").read_text())
ACCOUNT = "1234567890123456"  # what `${config('AccountID')}` gives once `s config add` has run
ENVIRONMENT = {"WABA_LAYER_VERSION": "3"}  # what the deployer exports (docs/deploy-fc.md)
# Read by Function Compute or by Powertools itself, not by the library.
PLATFORM_VARIABLES = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_LOG_LEVEL"}
EXPRESSION = re.compile(r"\$\{([^}]*)\}")


def raw() -> dict[str, Any]:
    return dict(yaml.safe_load(S_YAML.read_text()))


def render(value: Any, context: dict[str, Any]) -> Any:
    """Substitute Serverless Devs' variables as `s` does: a whole `${...}` keeps its value's type."""
    if isinstance(value, dict):
        return {key: render(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, context) for item in value]
    if not isinstance(value, str):
        return value
    if whole := EXPRESSION.fullmatch(value):
        return evaluate(whole.group(1), context)
    return EXPRESSION.sub(lambda match: str(evaluate(match.group(1), context)), value)


def evaluate(expression: str, context: dict[str, Any]) -> Any:
    if match := re.fullmatch(r"env\('(\w+)'(?:,\s*'([^']*)')?\)", expression):
        value = context["env"].get(match[1], match[2])
        if value is None:
            raise KeyError(f"env('{match[1]}') not found")  # as `s` says, and stops
        return value
    if match := re.fullmatch(r"config\('(\w+)'\)", expression):
        return context["config"][match[1]]
    if match := re.fullmatch(r"str\('vars\.(\w+)'\)", expression):
        return str(context["vars"][match[1]])
    if match := re.fullmatch(r"vars\.(\w+)", expression):
        return context["vars"][match[1]]
    if expression.startswith("resources."):
        return "${" + expression + "}"  # another resource's output: known only once it is deployed
    raise ValueError(f"an expression this renderer does not know: ${{{expression}}}")


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    """s.yaml with its variables substituted."""
    document = raw()
    context: dict[str, Any] = {"env": ENVIRONMENT, "config": {"AccountID": ACCOUNT}, "vars": document["vars"]}
    for _ in range(5):  # vars may use vars
        context["vars"] = render(context["vars"], context)
    return {**render(document, context), "vars": context["vars"]}


def functions(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: r["props"] for name, r in document["resources"].items() if r["component"] == "fc3"}


def ros_resources(document: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    stacks = [r["props"]["template"] for r in document["resources"].values() if r["component"] == "ros"]
    return {name: r for stack in stacks for name, r in stack["Resources"].items() if r["Type"] == kind}


def output_of(document: dict[str, Any], reference: str) -> Any:
    """What `${resources.<name>.output.<key>}` will be: the ROS stack output's value (a Fn::GetAtt)."""
    match = re.fullmatch(r"\$\{resources\.(\w+)\.output\.(\w+)\}", reference)
    assert match, f"{reference!r} is not another resource's output"
    return document["resources"][match[1]]["props"]["template"]["Outputs"][match[2]]["Value"]


def test_s_yaml_validates_against_the_schema(doc: dict[str, Any]) -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.validate(doc, SCHEMA, cls=jsonschema.Draft7Validator)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("props", "memorySize"), 500),  # not a multiple of 64
        (("props", "runtime"), "python3.10"),
        (("props", "environmentVariables", "CAMS_QPS_BUDGET"), 5),  # FC takes strings
        (("props", "environmentVariables", "ALIBABA_CLOUD_ACCESS_KEY_ID"), "LTAI5tExample"),
        (("props", "triggers", 0, "triggerConfig", "authType"), "anonymous"),
        (("props", "triggers", 0, "triggerConfig", "authType"), "jwt"),  # without its authConfig
        (("props", "concurrencyConfig", "reservedConcurrency"), "5"),
        (("props", "memory"), 512),  # a misspelt property fc3 would ignore
    ],
)
def test_schema_rejects_what_fc_would_refuse_or_ignore(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    broken = copy.deepcopy(doc)
    target = broken["resources"]["waba_http"]
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
    for text in (S_YAML.read_text(), (ROOT / "docs" / "deploy-fc.md").read_text()):
        assert f"--layer-name {name}" in text
        assert f"--code {layer_zip}" in text


def test_the_role_may_do_two_things_only(doc: dict[str, Any]) -> None:
    bucket, prefix = doc["vars"]["cacheBucket"], doc["vars"]["cachePrefix"]
    roles = ros_resources(doc, "ALIYUN::RAM::Role")
    assert not ros_resources(doc, "ALIYUN::RAM::AttachPolicyToRole"), "no system policy: they grant too much"
    for name, role in roles.items():
        trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert trust == [{"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": ["fc.aliyuncs.com"]}}]
        statements = [s for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]
        assert all(s["Effect"] == "Allow" for s in statements)
        assert not [a for s in statements for a in s["Action"] if "*" in a], f"{name}: wildcard actions"
        granted = sorted((sorted(s["Action"]), s["Resource"]) for s in statements)
        assert granted == [
            (["cams:QueryChatappBindWaba"], ["*"]),  # CAMS authorises this action on "*" only
            (["oss:GetObject", "oss:PutObject"], [f"acs:oss:*:*:{bucket}/{prefix}*"]),
        ]
    for props in functions(doc).values():
        assert output_of(doc, props["role"])["Fn::GetAtt"] in ([name, "Arn"] for name in roles)


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
    (trigger,) = document["resources"]["waba_http"]["props"]["triggers"]
    assert trigger["triggerConfig"] == "${vars.httpTrigger}"
    assert {"GET", "POST"} <= set(document["vars"]["httpTrigger"]["methods"])


def test_the_guides_jwt_trigger_is_valid(doc: dict[str, Any]) -> None:
    guide = (ROOT / "docs" / "deploy-fc.md").read_text()
    (block,) = re.findall(r"```yaml\n(\s*httpTrigger:\n.*?)\s*```", guide, re.DOTALL)
    trigger = yaml.safe_load(textwrap.dedent(block))["httpTrigger"]
    assert trigger["authType"] == "jwt"
    with_jwt = copy.deepcopy(doc)
    with_jwt["resources"]["waba_http"]["props"]["triggers"][0]["triggerConfig"] = trigger
    jsonschema.validate(with_jwt, SCHEMA, cls=jsonschema.Draft7Validator)


def test_reserved_concurrency_is_the_static_shares_instance_count(doc: dict[str, Any]) -> None:
    props = raw()["resources"]["waba_http"]["props"]
    assert props["concurrencyConfig"]["reservedConcurrency"] == "${vars.httpMaxInstances}"
    assert props["environmentVariables"]["CAMS_MAX_INSTANCES"] == "${str('vars.httpMaxInstances')}"
    budget, instances = doc["vars"]["camsQpsBudget"], doc["vars"]["httpMaxInstances"]
    assert 1 <= instances <= budget <= CAMS_MAX_QPS, "each instance needs at least one call per second"
    # and the library accepts the environment FC will give it
    environment = {**functions(doc)["waba_http"]["environmentVariables"], "CACHE_BUCKET": "bucket"}
    settings = Settings.from_env({**environment, "FC_FUNCTION_NAME": "waba-lookup-http", "FC_REGION": "ap-southeast-1"})
    assert settings.calls_per_second == budget // instances >= 1
    assert settings.cache_backend == "oss"


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
