"""Checks on what a function did when it ran (tests/deploy/harness.py): the settings it read are set
by the template, the AWS calls it made are allowed by its role, its modules came from its code and
layers only."""

import json
import re
from pathlib import Path
from typing import Any

from promptsvc.settings import Settings
from promptsvc_dev.template import NO_VALUE, LocalStack

# Settings that name a resource: a function that reads one must have it set by the template (unset,
# it is empty: a needed one fails the function's init, an optional one silently turns a feature off).
RESOURCE_SETTING = re.compile(r"(_table|_queue_url|_dlq_url|_arn|_endpoint|_ssm_parameter|_bucket)$")

# Actions AWS offers no resource-level permissions for: only these may have "Resource": "*".
STAR_RESOURCE_ACTIONS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}


def resource_settings() -> set[str]:
    return {name for name in Settings.model_fields if RESOURCE_SETTING.search(name)}


def unset_resource_settings(local: LocalStack, function: str, read: list[str]) -> list[str]:
    """The environment variables of the resource settings `function` read that its template
    environment does not set."""
    environment = local.function_environment(function)
    return sorted(
        name.upper() for name in read if name in resource_settings() and name.upper() not in environment
    )


# ---------------------------------------------------------------------------------------------
# IAM


class _Unresolved(str):
    """A value the local stack cannot resolve (a resource moto does not create, such as a role)."""


def resolve_deep(local: LocalStack, value: Any) -> Any:
    """Resolve intrinsic functions anywhere in `value` (Fn::If on conditions, Ref, GetAtt, Sub);
    AWS::NoValue entries disappear from lists."""
    if isinstance(value, list):
        items = [resolve_deep(local, item) for item in value]
        return [item for item in items if item is not NO_VALUE]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((name, arg),) = value.items()
        if name == "Ref":
            return NO_VALUE if arg == "AWS::NoValue" else local.refs.get(arg, arg)
        if name == "Fn::GetAtt":
            logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
            return local.attributes.get(
                (logical, attribute), _Unresolved(f"unresolved:{logical}.{attribute}")
            )
        if name == "Fn::Sub":
            return re.sub(r"\$\{([^}]+)\}", lambda m: str(_sub_token(local, m.group(1))), arg)
        if name == "Fn::If":
            condition, when_true, when_false = arg
            return resolve_deep(local, when_true if local.condition(condition) else when_false)
    resolved = {key: resolve_deep(local, item) for key, item in value.items()}
    return {key: item for key, item in resolved.items() if item is not NO_VALUE}


def _sub_token(local: LocalStack, token: str) -> str:
    if "." in token:
        logical, attribute = token.split(".", 1)
        return local.attributes.get((logical, attribute), f"unresolved:{logical}.{attribute}")
    return str(local.refs.get(token, token))


def role_logical_id(template: dict[str, Any], function: str) -> str:
    role = template["Resources"][function]["Properties"].get("Role")
    assert isinstance(role, dict) and "Fn::GetAtt" in role, f"{function} has no Role of this template"
    target = role["Fn::GetAtt"]
    return target[0] if isinstance(target, list) else target.split(".", 1)[0]


def role_statements(template: dict[str, Any], function: str) -> list[dict[str, Any]]:
    """The statements of the function's role's inline policies, unresolved."""
    role = template["Resources"][role_logical_id(template, function)]
    return [
        statement
        for policy in role["Properties"].get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
    ]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _pattern(glob: str, ignore_case: bool = False) -> re.Pattern[str]:
    text = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
    return re.compile(text, re.IGNORECASE if ignore_case else 0)


def allowed(statements: list[dict[str, Any]], action: str, resource: str) -> bool:
    """Whether the (resolved) statements allow `action` on `resource` (Allow only: no Deny is used)."""
    for statement in statements:
        assert statement.get("Effect") == "Allow" and "NotAction" not in statement, statement
        actions = [str(a) for a in _as_list(statement.get("Action", []))]
        resources = [str(r) for r in _as_list(statement.get("Resource", []))]
        if any(_pattern(a, ignore_case=True).fullmatch(action) for a in actions) and any(
            _pattern(r).fullmatch(resource) for r in resources
        ):
            return True
    return False


# What each kind of item of a DynamoDB transaction is authorized as.
_TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}


def call_permissions(local: LocalStack, call: dict[str, Any]) -> list[tuple[str, str]]:
    """The IAM actions and resource ARNs an AWS API call is authorized as."""
    account, region = local.account, local.region
    service, operation = call["signingName"], call["operation"]
    if call["service"] == "dynamodb":

        def table(name: str) -> str:
            return f"arn:aws:dynamodb:{region}:{account}:table/{name}"

        if "TransactItems" in call:
            return [
                (f"dynamodb:{_TRANSACT_ACTIONS[kind]}", table(name)) for kind, name in call["TransactItems"]
            ]
        if "TableNames" in call:
            return [(f"dynamodb:{operation}", table(name)) for name in call["TableNames"]]
        arn = table(call["TableName"])
        if call.get("IndexName"):
            arn += f"/index/{call['IndexName']}"
        return [(f"dynamodb:{operation}", arn)]
    if call["service"] == "sqs":
        logical = next(name for name, ref in local.refs.items() if ref == call["QueueUrl"])
        return [(f"sqs:{operation}", local.attributes[(logical, "Arn")])]
    if call["service"] == "secretsmanager":
        return [(f"secretsmanager:{operation}", call["SecretId"])]
    if call["service"] == "ssm":
        return [(f"ssm:{operation}", f"arn:aws:ssm:{region}:{account}:parameter/{call['Name'].lstrip('/')}")]
    if call["service"] == "apigatewaymanagementapi":
        api_id = local.refs.get("WebSocketApi", "WebSocketApi")
        verb = {"PostToConnection": "POST", "GetConnection": "GET", "DeleteConnection": "DELETE"}[operation]
        stage = local.refs["Stage"]
        connection = call["ConnectionId"]
        arn = f"arn:aws:execute-api:{region}:{account}:{api_id}/{stage}/{verb}/@connections/{connection}"
        return [("execute-api:ManageConnections", arn)]
    if call["service"] == "s3":  # object operations are authorized on the object's ARN
        return [(f"s3:{operation}", f"arn:aws:s3:::{call['Bucket']}/{call['Key']}")]
    if call["service"] == "sagemaker-runtime":
        # SageMaker lower-cases names in its ARNs.
        endpoint = call["EndpointName"].lower()
        return [(f"sagemaker:{operation}", f"arn:aws:sagemaker:{region}:{account}:endpoint/{endpoint}")]
    raise AssertionError(
        f"no IAM resource rule for {service}:{operation}: add one to checks.call_permissions()"
    )


def denied_calls(
    local: LocalStack, template: dict[str, Any], function: str, calls: list[dict[str, Any]]
) -> list[str]:
    """The calls the function made that its role does not allow, as 'action on resource'."""
    statements = resolve_deep(local, role_statements(template, function))
    denied = {
        f"{action} on {resource}"
        for call in calls
        for action, resource in call_permissions(local, call)
        if not allowed(statements, action, resource)
    }
    return sorted(denied)


def foreign_modules(modules: dict[str, str], allowed_roots: list[str], stdlib: list[str]) -> list[str]:
    """Modules imported from anywhere but the function's code, its layers and the standard library
    (with `-S`, site-packages is not on sys.path, so this only finds path hacks)."""
    roots = [str(Path(p).resolve()) for p in allowed_roots]
    std = [str(Path(p).resolve()) for p in stdlib]
    foreign = []
    for name, file in modules.items():
        if name in ("__main__", "__mp_main__"):  # the harness (multiprocessing aliases it)
            continue
        path = str(Path(file).resolve())
        if any(path.startswith(root + "/") for root in roots):
            continue
        if any(path.startswith(prefix + "/lib/") for prefix in std) and "site-packages" not in path:
            continue
        foreign.append(f"{name} ({file})")
    return sorted(foreign)


def emf_metrics(stdout: str) -> set[str]:
    """The names of the metrics in the CloudWatch EMF documents a function printed."""
    names: set[str] = set()
    for line in stdout.splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict) and "_aws" in document:
            for directive in document["_aws"].get("CloudWatchMetrics", []):
                names.update(metric["Name"] for metric in directive.get("Metrics", []))
    return names
