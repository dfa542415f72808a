"""s.yaml as Serverless Devs renders it, offline, and the numbers local runs take from it.

    trigger = queue_trigger()      # the SMQ trigger's batch size, window and retries, the worker's timeout and cap
    environment = deployed_environment(rendered(), HTTP)   # what the HTTP function will find in os.environ

How `${...}` and deploy-time outputs are rendered: docs/architecture.md#syaml-offline.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

S_YAML = Path(__file__).resolve().parents[3] / "s.yaml"
ACCOUNT = "1234567890123456"  # what `${config('AccountID')}` gives once `s config add` has run
ENVIRONMENT = {"WABA_LAYER_VERSION": "1"}  # what the deployer exports (docs/deploy-fc.md)
HTTP, WORKER = "waba_http", "waba_worker"  # the fc3 resources
EXPRESSION = re.compile(r"\$\{([^}]*)\}")


@dataclass(frozen=True)
class QueueTrigger:
    """The worker's SMQ trigger as s.yaml deploys it, for the local EventBridge stand-in."""

    batch_size: int  # runOptions.batchWindow.CountBasedWindow: most messages in one invocation
    batch_window_seconds: float  # runOptions.batchWindow.TimeBasedWindow: longest wait to fill a batch
    retry_attempts: int  # runOptions.retryStrategy.MaximumRetryAttempts: re-pushes of a failed or throttled batch
    is_base64_decode: bool  # sourceMNSParameters.IsBase64Decode: whether messageBody is base64-decoded first
    worker_timeout_seconds: int  # the worker's timeout
    worker_max_instances: int  # the worker's reserved concurrency: the batches that run at once
    visibility_timeout_seconds: int  # the refresh queue's VisibilityTimeout


def raw(path: Path = S_YAML) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text()))


def rendered(
    path: Path = S_YAML, environment: Mapping[str, str] | None = None, account: str = ACCOUNT
) -> dict[str, Any]:
    """The file with its variables substituted; `vars` holds the substituted vars."""
    document = raw(path)
    context = {"env": environment or ENVIRONMENT, "config": {"AccountID": account}, "vars": document["vars"]}
    for _ in range(5):  # vars may use vars
        context["vars"] = render(context["vars"], context)
    return {**render(document, context), "vars": context["vars"]}


def render(value: Any, context: dict[str, Any]) -> Any:
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


def functions(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The fc3 resources' props, by resource name."""
    return {name: r["props"] for name, r in document["resources"].items() if r["component"] == "fc3"}


def http_function(document: dict[str, Any] | None = None) -> dict[str, Any]:
    return functions(document or rendered())[HTTP]


def worker_function(document: dict[str, Any] | None = None) -> dict[str, Any]:
    return functions(document or rendered())[WORKER]


def ros_resources(document: dict[str, Any], kind: str | None = None) -> dict[str, dict[str, Any]]:
    """The ROS stacks' resources (of one Type if given), by logical name."""
    stacks = [r["props"]["template"] for r in document["resources"].values() if r["component"] == "ros"]
    return {n: r for stack in stacks for n, r in stack["Resources"].items() if kind in (None, r["Type"])}


def output_of(document: dict[str, Any], reference: str) -> Any:
    """What `${resources.<name>.output.<key>}` will be: the ROS stack output's Value (a Fn::GetAtt, a Fn::Join)."""
    match = re.fullmatch(r"\$\{resources\.(\w+)\.output\.(\w+)\}", reference)
    if not match:
        raise ValueError(f"{reference!r} is not another resource's output")
    return document["resources"][match[1]]["props"]["template"]["Outputs"][match[2]]["Value"]


# Fn::GetAtt attributes whose value is one of the resource's own properties: the attribute, then the property.
NAMED_ATTRIBUTES = {
    "QueueName": "QueueName",
    "Name": "BucketName",
    "InstanceName": "InstanceName",
    "TableName": "TableName",
}


def stack_value(document: dict[str, Any], value: Any) -> Any:
    """A ROS output's value once deployed, as far as it is known before: Fn::Join, and Fn::GetAtt of a name the
    stack gives (anything else, an ARN say, becomes "<attribute>")."""
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(str(stack_value(document, part)) for part in parts)
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        name, attribute = value["Fn::GetAtt"]
        properties = ros_resources(document)[name]["Properties"]
        return stack_value(document, properties.get(NAMED_ATTRIBUTES.get(attribute, ""), f"<{attribute}>"))
    return value


def deployed_environment(
    document: dict[str, Any], function: str, fc_variables: Mapping[str, str] | None = None
) -> dict[str, str]:
    """A function's environment as Function Compute will give it: the stack's outputs filled in, and FC's own
    variables (FC_FUNCTION_NAME, and FC_REGION from the function's region unless `fc_variables` say otherwise)."""
    props = functions(document)[function]
    variables = props["environmentVariables"]
    resolved = {
        name: str(stack_value(document, output_of(document, value))) if value.startswith("${") else value
        for name, value in variables.items()
    }
    platform = {"FC_FUNCTION_NAME": props["functionName"], "FC_REGION": props["region"], **(fc_variables or {})}
    return {**resolved, **platform}


def queue_trigger(document: dict[str, Any] | None = None) -> QueueTrigger:
    """The worker's eventbridge trigger, its timeout and cap, and the visibility timeout of the queue it reads."""
    document = document or rendered()
    worker = worker_function(document)
    (trigger,) = [t["triggerConfig"] for t in worker["triggers"] if t["triggerType"] == "eventbridge"]
    source = trigger["eventSourceConfig"]["eventSourceParameters"]["sourceMNSParameters"]
    logical_name, _ = output_of(document, source["QueueName"])["Fn::GetAtt"]
    queue = ros_resources(document)[logical_name]["Properties"]
    window, retries = trigger["runOptions"]["batchWindow"], trigger["runOptions"]["retryStrategy"]
    return QueueTrigger(
        batch_size=int(window["CountBasedWindow"]),
        batch_window_seconds=float(window["TimeBasedWindow"]),
        retry_attempts=int(retries["MaximumRetryAttempts"]),
        is_base64_decode=bool(source["IsBase64Decode"]),
        worker_timeout_seconds=int(worker["timeout"]),
        worker_max_instances=int(worker["concurrencyConfig"]["reservedConcurrency"]),
        visibility_timeout_seconds=int(queue["VisibilityTimeout"]),
    )
