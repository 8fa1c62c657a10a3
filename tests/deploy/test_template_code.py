"""template.yaml and the code agree: handlers exist, every setting a function reads is set, every
table has the keys and indexes the code queries, every AWS call a function makes is allowed by its
role (and nothing much else is), and the operational pieces (logs, tracing, alarms) cover every
function. None of this needs `sam build`: the functions run from the checkout (target `source`).
"""

import ast
import json
import re
import time
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from promptsvc.adapters.connection_table import BY_CONNECTION
from promptsvc.adapters.prompt_items import INDEXES, SORT_ATTRIBUTE
from promptsvc.adapters.usage_table import BY_DAY
from promptsvc.api.app import Api, create_app
from promptsvc.api.openapi import routes_of
from promptsvc.settings import NEEDS, MissingSettings, Settings
from promptsvc.settings.engines import EngineSettings
from promptsvc.settings.mock_engine import MockEngineSettings
from promptsvc.settings.worker import WorkerSettings
from promptsvc_dev.template import NO_VALUE, LocalStack, create_resources, load_template
from starlette.routing import Match

from tests.deploy import checks
from tests.deploy.conftest import EVENTS, PARAMETERS, ROOT, TEMPLATE, Stack
from tests.deploy.scenarios import SCENARIOS

PACKAGE = ROOT / "layers" / "promptsvc" / "promptsvc"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE)


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: r["Properties"] for name, r in resources_of(template, "AWS::Serverless::Function").items()}


def test_every_function_has_a_scenario_and_an_event(template: dict[str, Any]) -> None:
    assert set(functions(template)) == set(SCENARIOS)
    prefixes = {p.name.split("-")[0] for p in EVENTS.glob("*.json")}
    for name, props in functions(template).items():
        assert Path(props["CodeUri"]).name in prefixes, (
            f"{name}: no events/{Path(props['CodeUri']).name}-*.json"
        )


# ---------------------------------------------------------------------------------------------
# handlers and environment


@pytest.mark.parametrize("function", sorted(SCENARIOS))
def test_the_handler_the_template_names_exists(template: dict[str, Any], function: str) -> None:
    props = functions(template)[function]
    module, attribute = props["Handler"].rsplit(".", 1)
    path = ROOT / props["CodeUri"] / (module.replace(".", "/") + ".py")
    assert path.is_file(), f"{function}: {props['Handler']} needs {path.relative_to(ROOT)}"
    tree = ast.parse(path.read_text())
    defined = {
        node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    } | {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    assert attribute in defined, f"{function}: {path.relative_to(ROOT)} defines no {attribute}"


def test_every_variable_the_template_sets_is_a_setting(template: dict[str, Any]) -> None:
    """A typo (PROMPT_TABLE) would be silently ignored: pydantic-settings has no such field."""
    known = {
        name.upper()
        for group in (Settings, EngineSettings, MockEngineSettings, WorkerSettings)
        for name in group.model_fields
    }
    glob = template["Globals"]["Function"].get("Environment", {}).get("Variables", {})
    for name, props in {"Globals": {"Environment": {"Variables": glob}}, **functions(template)}.items():
        for variable in props.get("Environment", {}).get("Variables", {}):
            assert variable in known or variable.startswith("POWERTOOLS_"), (
                f"{name}: {variable} is read by nothing"
            )


FUNCTION_NEEDS = {
    "ApiFunction": "api",
    "ConsoleFunction": "console",
    "RegistryFunction": "registry",
    "ConsumerFunction": "consumer",
    "DeadLetterFunction": "deadletter",
    "WsFunction": "ws",
    "StreamFunction": "stream",
    "SettleFunction": "settle",
}


def test_every_function_is_given_what_it_cannot_start_without(template: dict[str, Any]) -> None:
    """Each function checks its NEEDS at init (Settings.for_function): the template sets them all,
    and the ECS worker's task definition sets the worker's."""
    assert set(FUNCTION_NEEDS) == set(functions(template)), "a function without its NEEDS entry"
    local = LocalStack(region="us-east-1", template=template)
    for logical_id, function in FUNCTION_NEEDS.items():
        environment = local.function_environment(logical_id)
        assert {name.upper() for name in NEEDS[function]} <= set(environment), logical_id
        needed = Settings(**{name: environment[name.upper()] for name in NEEDS[function]})
        assert needed.for_function(function) is needed  # every one set, none empty
    worker_task = (ROOT / "infra" / "ecs-gpu" / "stack.yaml").read_text()
    for name in NEEDS["worker"]:
        assert f"Name: {name.upper()}, Value:" in worker_task, name


def test_a_function_missing_what_it_needs_fails_at_init_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PROMPTS_TABLE", "PROMPTS_QUEUE_URL", "PROMPTS_DLQ_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PROMPTS_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/1/q")
    with pytest.raises(
        MissingSettings, match="the consumer function needs PROMPTS_TABLE, PROMPTS_DLQ_URL: not set"
    ):
        Settings().for_function("consumer")


@pytest.mark.parametrize("function", sorted(SCENARIOS))
def test_what_a_function_reads_and_calls_is_set_and_allowed(source_stack: Stack, function: str) -> None:
    """Run the function's scenario from the checkout and check, for it and every function it used:
    each resource setting it read (table, queue, secret, endpoint) is set in its environment by the
    template, and each AWS call it made is allowed by its role."""
    SCENARIOS[function](source_stack)

    template, local = source_stack.target.template, source_stack.local
    for outcome in source_stack.outcomes:
        name = outcome.function
        assert outcome.handler_callable, name
        assert checks.unset_resource_settings(local, name, outcome.settings_read) == [], (
            f"{name}: read but not set by the template"
        )
        assert checks.denied_calls(local, template, name, outcome.aws_calls) == [], (
            f"{name}: not allowed by its role"
        )


# ---------------------------------------------------------------------------------------------
# tables


def key_schema(spec: list[dict[str, str]]) -> dict[str, str]:
    return {key["KeyType"]: key["AttributeName"] for key in spec}


def attribute_types(props: dict[str, Any]) -> dict[str, str]:
    return {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]}


def indexes(props: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {i["IndexName"]: key_schema(i["KeySchema"]) for i in props.get("GlobalSecondaryIndexes", [])}


def table(template: dict[str, Any], name: str) -> dict[str, Any]:
    props: dict[str, Any] = template["Resources"][name]["Properties"]
    return props


# What the adapters address each table by (their module docstrings say the same): the key of
# every GetItem/UpdateItem/DeleteItem, and the type of each key attribute.
TABLE_KEYS = {
    "PromptsTable": ({"HASH": "pk"}, {"pk": "S"}),  # userId#id: prompt ids are per user
    "ApiKeysTable": ({"HASH": "keyId"}, {"keyId": "S"}),
    "ThreadEventsTable": ({"HASH": "threadKey", "RANGE": "seq"}, {"threadKey": "S", "seq": "N"}),
    "ConnectionsTable": ({"HASH": "connectionId"}, {"connectionId": "S"}),
    "SubscriptionsTable": (
        {"HASH": "threadId", "RANGE": "connectionId"},
        {"threadId": "S", "connectionId": "S"},
    ),
    "RegistryTable": ({"HASH": "promptId", "RANGE": "sk"}, {"promptId": "S", "sk": "S"}),
    "ResponseCacheTable": ({"HASH": "cacheKey"}, {"cacheKey": "S"}),
    "UsageTable": ({"HASH": "userId", "RANGE": "sk"}, {"userId": "S", "sk": "S"}),
    "LimitsTable": ({"HASH": "key"}, {"key": "S"}),  # keyId#m#minute, keyId#d#day, keyId#inflight
}
# Tables whose items the code gives an `expiresAt` (epoch seconds) to be deleted by TTL.
TTL_TABLES = {
    "PromptsTable",
    "ThreadEventsTable",
    "ConnectionsTable",
    "SubscriptionsTable",
    "ResponseCacheTable",
    "LimitsTable",  # the minute and day counters
}


def test_every_table_has_the_keys_the_code_uses(template: dict[str, Any]) -> None:
    tables = resources_of(template, "AWS::DynamoDB::Table")
    assert set(tables) == set(TABLE_KEYS), "a table without expectations here: add it to TABLE_KEYS"
    for name, (keys, types) in TABLE_KEYS.items():
        props = table(template, name)
        assert key_schema(props["KeySchema"]) == keys, name
        assert {k: attribute_types(props)[k] for k in types} == types, name
        ttl = props.get("TimeToLiveSpecification", {})
        if name in TTL_TABLES:
            assert ttl == {"AttributeName": "expiresAt", "Enabled": True}, name


def test_the_prompts_table_has_every_index_the_query_planner_uses(template: dict[str, Any]) -> None:
    props = table(template, "PromptsTable")
    assert indexes(props) == {
        index.name: {"HASH": index.key_attribute, "RANGE": index.sort_attribute} for index in INDEXES
    }
    types = attribute_types(props)
    assert all(types[index.key_attribute] == "S" for index in INDEXES)
    assert all(types[index.sort_attribute] == "S" for index in INDEXES)
    # sk is createdAt#id; an index sorting on another time field sorts on that field itself.
    assert {(i.sort_field, i.sort_attribute) for i in INDEXES} == {
        ("createdAt", SORT_ATTRIBUTE),
        ("updatedAt", "updatedAt"),
    }


def test_the_other_indexes_match_their_adapters(template: dict[str, Any]) -> None:
    assert indexes(table(template, "SubscriptionsTable"))[BY_CONNECTION]["HASH"] == "connectionId"
    registry = indexes(table(template, "RegistryTable"))
    assert registry["byOwner"] == {"HASH": "ownerId", "RANGE": "promptId"}
    assert indexes(table(template, "UsageTable"))[BY_DAY] == {"HASH": "day", "RANGE": "userModel"}


def index_names_in_code() -> dict[str, str]:
    """Index names the package spells out: `IndexName="..."` arguments, and module-level string
    constants named BY_* or *_INDEX (how the adapters name theirs), with where they are."""
    found: dict[str, str] = {}
    for path in PACKAGE.rglob("*.py"):
        if "local" in path.relative_to(PACKAGE).parts:
            continue
        tree = ast.parse(path.read_text())
        where = str(path.relative_to(ROOT))
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                for target in node.targets:
                    if isinstance(target, ast.Name) and re.fullmatch(r"BY_\w+|\w+_INDEX", target.id):
                        found[str(node.value.value)] = where
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.keyword)
                and node.arg == "IndexName"
                and isinstance(node.value, ast.Constant)
            ):
                found[str(node.value.value)] = where
    return found


def test_every_index_named_in_the_code_exists(template: dict[str, Any]) -> None:
    declared = {
        name
        for props in map(lambda r: r["Properties"], resources_of(template, "AWS::DynamoDB::Table").values())
        for name in indexes(props)
    }
    used = index_names_in_code()
    assert {"byConnection", "byOwner"} <= set(used)  # the scan finds what it should
    assert {name: where for name, where in used.items() if name not in declared} == {}


def test_the_stream_function_gets_new_images(template: dict[str, Any]) -> None:
    """The fan-out reads each INSERT's NewImage."""
    stream = table(template, "ThreadEventsTable")["StreamSpecification"]["StreamViewType"]
    assert stream in {"NEW_IMAGE", "NEW_AND_OLD_IMAGES"}


# ---------------------------------------------------------------------------------------------
# the layer, the runtime


def test_the_layer_is_built_by_sam_with_the_dependencies_of_the_package(template: dict[str, Any]) -> None:
    layer = template["Resources"]["PromptsvcLayer"]
    assert layer["Metadata"]["BuildMethod"] == "python3.12"
    assert layer["Metadata"]["BuildArchitecture"] == {"Ref": "Architecture"}
    assert layer["Properties"]["CompatibleArchitectures"] == [{"Ref": "Architecture"}]
    content = ROOT / layer["Properties"]["ContentUri"]
    assert (content / "promptsvc" / "__init__.py").is_file()  # lands in python/promptsvc
    assert set(layer_pins()) >= {canonicalize_name(Requirement(d).name) for d in project_dependencies()}


def layer_pins() -> dict[str, Version]:
    """The layer's requirements.txt (scripts/lock): every line one exact pin."""
    pins: dict[str, Version] = {}
    for line in (ROOT / "layers/promptsvc/requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"not an exact pin: {line}"
            pins[canonicalize_name(requirement.name)] = Version(spec.version)
    return pins


def project_dependencies() -> list[str]:
    """What the layer ships besides the package: the base dependencies and the `server` extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["server"]]


def test_the_layer_ships_pinned_versions_within_the_projects_ranges() -> None:
    pins = layer_pins()
    for dependency in project_dependencies():
        requirement = Requirement(dependency)
        pinned = pins[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(pinned), (
            f"{pinned} of {requirement.name} is outside {dependency}"
        )


def test_the_tests_run_the_versions_the_layer_ships() -> None:
    """scripts/bootstrap installs under the layer's pins: what is tested is what deploys."""
    differing = {
        name: (str(pinned), installed)
        for name, pinned in layer_pins().items()
        if Version(installed := metadata.version(name)) != pinned
    }
    assert differing == {}, "run scripts/bootstrap (or scripts/lock after changing a dependency)"


def test_every_function_runs_python312_on_the_chosen_architecture_with_tracing(
    template: dict[str, Any],
) -> None:
    glob = template["Globals"]["Function"]
    assert glob["Runtime"] == "python3.12"
    assert glob["Architectures"] == [{"Ref": "Architecture"}]
    assert glob["Tracing"] == "Active"
    assert template["Parameters"]["Architecture"]["Default"] == "arm64"
    for name, props in functions(template).items():
        assert not {"Runtime", "Architectures", "Tracing"} & set(props), f"{name} overrides the Globals"


# ---------------------------------------------------------------------------------------------
# permissions


@pytest.fixture
def local(aws: None) -> LocalStack:
    """The template's resources in moto (physical ids to resolve the roles' policies against)."""
    return create_resources(TEMPLATE, parameters=PARAMETERS)


def resolved_statements(local: LocalStack, template: dict[str, Any], function: str) -> list[dict[str, Any]]:
    return list(checks.resolve_deep(local, checks.role_statements(template, function)))


@pytest.mark.parametrize("function", sorted(SCENARIOS))
def test_every_function_has_its_own_role_and_no_ignored_policies(
    template: dict[str, Any], function: str
) -> None:
    props = functions(template)[function]
    assert "Policies" not in props, f"{function}: SAM ignores Policies when Role is set; add to its role"
    role = template["Resources"][checks.role_logical_id(template, function)]
    assert role["Type"] == "AWS::IAM::Role"
    assert "ManagedPolicyArns" not in role["Properties"], "managed policies grant on '*'"
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "lambda.amazonaws.com"}
    others = [f for f in functions(template) if f != function]
    assert all(
        checks.role_logical_id(template, f) != checks.role_logical_id(template, function) for f in others
    )


def test_no_action_is_a_wildcard_and_only_x_ray_is_on_every_resource(template: dict[str, Any]) -> None:
    for role_name, role in resources_of(template, "AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                body = statement
                if "Fn::If" in statement:  # a conditional statement: check both branches
                    body = next(b for b in statement["Fn::If"][1:] if isinstance(b, dict) and "Effect" in b)
                actions = checks._as_list(body["Action"])
                assert all("*" not in str(a) for a in actions), f"{role_name}: {actions}"
                if "*" in checks._as_list(body["Resource"]):
                    assert set(actions) <= checks.STAR_RESOURCE_ACTIONS, f"{role_name}: {actions} on '*'"
    text = TEMPLATE.read_text()
    for line in text.splitlines():
        if re.search(r"Resource:\s*\"\*\"", line):
            assert "#" in line, f"a '*' resource without a comment saying why AWS requires it: {line.strip()}"


def test_only_the_console_may_make_list_or_delete_api_keys(
    local: LocalStack, template: dict[str, Any]
) -> None:
    """Every function that authenticates reads a key and records its lastUsedAt; the one that
    serves the key routes is the only one that may create, list or delete keys (a queue API made
    to misbehave cannot mint an admin key)."""
    keys = checks.resolve_deep(local, {"Fn::GetAtt": ["ApiKeysTable", "Arn"]})
    by_user = f"{keys}/index/byUser"
    writers = set()
    for function in functions(template):
        statements = resolved_statements(local, template, function)
        for action, resource in [
            ("dynamodb:PutItem", keys),
            ("dynamodb:DeleteItem", keys),
            ("dynamodb:Query", by_user),
            ("dynamodb:Scan", by_user),
        ]:
            if checks.allowed(statements, action, resource):
                writers.add(function)
    assert writers == {"ConsoleFunction"}


@pytest.mark.parametrize("function", sorted(SCENARIOS))
def test_each_role_lets_its_function_log_trace_and_be_fed_by_its_event_sources(
    local: LocalStack, template: dict[str, Any], function: str
) -> None:
    props = functions(template)[function]
    statements = resolved_statements(local, template, function)
    group = props["LoggingConfig"]["LogGroup"]["Ref"]
    log_group = template["Resources"][group]
    assert log_group["Type"] == "AWS::Logs::LogGroup"
    assert log_group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    group_arn = checks.resolve_deep(local, {"Fn::GetAtt": [group, "Arn"]})
    for action in ("logs:CreateLogStream", "logs:PutLogEvents"):
        assert checks.allowed(statements, action, group_arn), f"{function}: {action}"
    for action in ("xray:PutTraceSegments", "xray:PutTelemetryRecords"):
        assert checks.allowed(statements, action, "*"), f"{function}: {action}"

    for source in props.get("Events", {}).values():
        if source["Type"] == "SQS":
            queue = checks.resolve_deep(local, source["Properties"]["Queue"])
            for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"):
                assert checks.allowed(statements, action, queue), f"{function}: {action} on {queue}"
        if source["Type"] == "DynamoDB":
            stream = checks.resolve_deep(local, source["Properties"]["Stream"])
            for action in ("DescribeStream", "GetRecords", "GetShardIterator", "ListStreams"):
                assert checks.allowed(statements, f"dynamodb:{action}", stream), f"{function}: {action}"
            failures = source["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]
            queue = checks.resolve_deep(local, failures)
            assert checks.allowed(statements, "sqs:SendMessage", queue), f"{function}: on-failure queue"


@pytest.mark.parametrize(("backend", "may_invoke"), [("sagemaker", True), ("mock", False), ("ecs", False)])
def test_the_consumer_may_invoke_sagemaker_endpoints_only_with_the_sagemaker_backend(
    aws: None, template: dict[str, Any], backend: str, may_invoke: bool
) -> None:
    local = create_resources(TEMPLATE, parameters={"InferenceBackend": backend})
    statements = resolved_statements(local, template, "ConsumerFunction")
    endpoint = f"arn:aws:sagemaker:us-east-1:{local.account}:endpoint/promptsvc-llama-3-1-8b-instruct"
    for action in ("sagemaker:InvokeEndpoint", "sagemaker:InvokeEndpointWithResponseStream"):
        assert checks.allowed(statements, action, endpoint) is may_invoke
    other = f"arn:aws:sagemaker:us-east-1:{local.account}:endpoint/someone-elses-endpoint"
    assert not checks.allowed(statements, "sagemaker:InvokeEndpoint", other)


def test_the_sagemaker_catalog_endpoints_are_within_the_prefix(template: dict[str, Any]) -> None:
    catalog = json.loads((PACKAGE / "data" / "models.json").read_text())
    prefix = template["Parameters"]["SageMakerEndpointPrefix"]["Default"]
    for model in catalog["models"]:
        if model["engine"] == "sagemaker":
            assert model["target"]["endpointName"].startswith(prefix), model["id"]


@pytest.mark.parametrize(
    ("backend", "engine", "enabled"),
    [("none", "", False), ("sagemaker", "", True), ("ecs", "", False), ("mock", "mock", True)],
)
def test_the_inference_backend_decides_the_consumer(
    aws: None, template: dict[str, Any], backend: str, engine: str, enabled: bool
) -> None:
    local = create_resources(TEMPLATE, parameters={"InferenceBackend": backend})
    assert local.function_environment("ConsumerFunction")["ENGINE"] == engine
    source = functions(template)["ConsumerFunction"]["Events"]["Prompts"]["Properties"]
    assert local.resolve(source["Enabled"]) is enabled


# ---------------------------------------------------------------------------------------------
# operations


def alarms_on(template: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(metric, dimension, its Ref/GetAtt target or literal value) of every alarm, metric-math ones
    included."""
    found = set()
    for alarm in resources_of(template, "AWS::CloudWatch::Alarm").values():
        props = alarm["Properties"]
        stats = [m["MetricStat"]["Metric"] for m in props.get("Metrics", []) if "MetricStat" in m]
        if "MetricName" in props:
            stats.append(props)
        for stat in stats:
            for dimension in stat["Dimensions"]:
                value = dimension["Value"]
                if isinstance(value, dict):
                    value = value.get("Ref") or value.get("Fn::GetAtt", [None])[0]
                found.add((stat["MetricName"], dimension["Name"], value))
    return found


def test_the_alarms_cover_every_function_queue_and_stream(template: dict[str, Any]) -> None:
    alarms = alarms_on(template)
    for name, props in functions(template).items():
        assert ("Errors", "FunctionName", name) in alarms, name
        assert ("Throttles", "FunctionName", name) in alarms, name
        for source in props.get("Events", {}).values():
            if source["Type"] == "DynamoDB":
                assert ("IteratorAge", "FunctionName", name) in alarms, name
                failures = source["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]
                queue = failures["Fn::GetAtt"][0]
                assert ("ApproximateNumberOfMessagesVisible", "QueueName", queue) in alarms, queue
            if source["Type"] == "SQS":
                queue = source["Properties"]["Queue"]["Fn::GetAtt"][0]
                assert ("ApproximateAgeOfOldestMessage", "QueueName", queue) in alarms, queue
    for name, queue in resources_of(template, "AWS::SQS::Queue").items():
        redrive = queue["Properties"].get("RedrivePolicy")
        if redrive:
            dlq = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
            assert ("ApproximateNumberOfMessagesVisible", "QueueName", dlq) in alarms, f"{name}'s DLQ"
    for name, alarm in resources_of(template, "AWS::CloudWatch::Alarm").items():
        expected = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
        assert alarm["Properties"]["AlarmActions"] == expected, name


def test_the_http_api_logs_and_throttles(template: dict[str, Any]) -> None:
    api = template["Resources"]["HttpApi"]["Properties"]
    group = api["AccessLogSettings"]["DestinationArn"]["Fn::GetAtt"][0]
    assert template["Resources"][group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert "$context.requestId" in api["AccessLogSettings"]["Format"]
    assert "authorization" not in api["AccessLogSettings"]["Format"].lower()  # no keys in the logs
    assert {"ThrottlingBurstLimit", "ThrottlingRateLimit"} <= set(api["DefaultRouteSettings"])
    assert "authorization" in api["CorsConfiguration"]["AllowHeaders"]


def test_the_outputs_name_every_table_and_queue_and_both_urls(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    values = [json.dumps(o["Value"]) for o in outputs.values()]
    for name in [*resources_of(template, "AWS::DynamoDB::Table"), *resources_of(template, "AWS::SQS::Queue")]:
        assert any(json.dumps({"Ref": name}) == v for v in values), f"no output names {name}"
    assert {"HttpApiUrl", "WebSocketUrl"} <= set(outputs)


# ---------------------------------------------------------------------------------------------
# API Gateway sends each route of the FastAPI app to a function that serves it

# The HTTP API's functions and the API each serves (`http_handler(api, ...)` in its app.py).
HTTP_FUNCTIONS: dict[str, Api] = {
    "ApiFunction": "queue",
    "ConsoleFunction": "console",
    "RegistryFunction": "registry",
}


def http_api_routes(template: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Each HTTP API route of the template: (method as written, path, function)."""
    return [
        (e["Properties"]["Method"], e["Properties"]["Path"], function)
        for function, props in functions(template).items()
        for e in props.get("Events", {}).values()
        if e["Type"] == "HttpApi"
    ]


def _gateway_route(routes: list[tuple[str, str, str]], method: str, path: str) -> str | None:
    """The function API Gateway (HTTP API) invokes for `method path`: the most specific of
    (method, path, function) routes: a static path, then one with path variables, then the greedy
    `{proxy+}` route with the longest prefix; a route of the exact method before ANY."""
    best: tuple[tuple[int, int, int], str] | None = None
    for route_method, route_path, function in routes:
        if route_method not in ("ANY", method):
            continue
        exact = int(route_method == method)
        if route_path.endswith("/{proxy+}"):
            prefix = route_path.removesuffix("/{proxy+}")
            if not path.startswith(prefix + "/") or path == prefix + "/":
                continue
            rank = (1, len(prefix), exact)
        else:
            pattern = re.sub(r"\{[^/}]+\}", "[^/]+", route_path)
            if not re.fullmatch(pattern, path):
                continue
            rank = (3 if pattern == route_path else 2, len(route_path), exact)
        if best is None or rank > best[0]:
            best = (rank, function)
    return best[1] if best else None


def test_every_route_of_the_app_reaches_a_function_that_serves_it(template: dict[str, Any]) -> None:
    """The tests run the three APIs in one app (`promptsvc dev`, tests/integration); deployed, API
    Gateway picks a function by path: a route it sent to a function that lacks it would be a 404
    there and nowhere else."""
    for function, api in HTTP_FUNCTIONS.items():
        assert (
            f'http_handler("{api}"'
            in (ROOT / functions(template)[function]["CodeUri"] / "app.py").read_text()
        )
    gateway = [(method.upper(), path, function) for method, path, function in http_api_routes(template)]
    assert {function for _, _, function in gateway} == set(HTTP_FUNCTIONS)
    served = {
        function: create_app(Settings(), apis=(api,)).routes for function, api in HTTP_FUNCTIONS.items()
    }
    checked = 0
    for route in routes_of(create_app(Settings()).routes):
        if not isinstance(route, APIRoute):
            continue
        path = re.sub(r"\{[^}]+\}", "x1", route.path)  # a value for each path parameter
        for method in sorted(route.methods):
            function = _gateway_route(gateway, method, path)
            assert function is not None, f"API Gateway routes no function for {method} {path}"
            scope = {"type": "http", "method": method, "path": path}
            assert any(r.matches(scope)[0] is Match.FULL for r in served[function]), (
                f"{method} {path} goes to {function}, which does not serve it"
            )
            checked += 1
    assert checked >= 25  # the queue's, the console's and the registry's routes


# ---------------------------------------------------------------------------------------------
# events/ payloads agree with the template


def test_the_events_are_routed_as_the_template_routes_them(template: dict[str, Any]) -> None:
    def http_routes(function: str) -> set[str]:
        return {f"{method} {path}" for method, path, of in http_api_routes(template) if of == function}

    routes = {
        "api-": http_routes("ApiFunction"),
        "console-": http_routes("ConsoleFunction"),
        "registry-": http_routes("RegistryFunction"),
    }
    ws_routes = {
        r["Properties"]["RouteKey"] for r in resources_of(template, "AWS::ApiGatewayV2::Route").values()
    }
    for path in sorted(EVENTS.glob("*.json")):
        payload = json.loads(path.read_text())
        for prefix, function_routes in routes.items():
            if path.name.startswith(prefix):
                assert payload["version"] == "2.0", path.name  # HTTP API payload format 2.0
                assert payload["routeKey"] in function_routes, path.name
                assert payload["requestContext"]["routeKey"] == payload["routeKey"], path.name
        if path.name.startswith("ws-"):
            assert payload["requestContext"]["routeKey"] in ws_routes, path.name
    sweep = functions(template)["DeadLetterFunction"]["Events"]["Sweep"]["Properties"]
    assert json.loads(sweep["Input"]) == json.loads((EVENTS / "deadletter-schedule.json").read_text())
    sqs = json.loads((EVENTS / "consumer-sqs-batch.json").read_text())["Records"][0]
    assert sqs["eventSourceARN"].endswith(":PromptsQueue")  # moto names a queue by its logical id
    stream = json.loads((EVENTS / "stream-dynamodb-batch.json").read_text())["Records"][0]
    assert ":table/ThreadEventsTable/stream/" in stream["eventSourceARN"]


# ---------------------------------------------------------------------------------------------
# samconfig.toml


def overrides(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in text.split())


@pytest.mark.parametrize("environment", ["default", "prod"])
def test_samconfig_deploys_what_it_builds_with_parameters_the_template_has(
    template: dict[str, Any], environment: str
) -> None:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())[environment]
    build = overrides(config["build"]["parameters"]["parameter_overrides"])
    deploy = overrides(config["deploy"]["parameters"]["parameter_overrides"])
    assert build["Architecture"] == deploy["Architecture"]  # the layer is built for what runs it
    for name, value in {**build, **deploy}.items():
        spec = template["Parameters"][name]
        assert value in map(str, spec.get("AllowedValues", [value])), f"{environment}: {name}={value}"
    assert "CAPABILITY_IAM" in config["deploy"]["parameters"]["capabilities"]  # the roles
    assert config["global"]["parameters"]["stack_name"]


# ---------------------------------------------------------------------------------------------
# encryption, access logs, and the alarms on what the API and the consumer report themselves

KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
INFRA_TEMPLATES = [ROOT / "infra" / "ecs-gpu" / "stack.yaml", ROOT / "infra" / "sagemaker" / "endpoint.yaml"]


def deployed(template: dict[str, Any], **parameters: str) -> LocalStack:
    """The template's parameters and conditions as CloudFormation would resolve them for these
    parameter values; nothing is created, so resource attributes stay unresolved."""
    local = LocalStack(region="us-east-1", template=template)
    local.refs.update(
        {
            "AWS::Region": "us-east-1",
            "AWS::AccountId": local.account,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }
    )
    for name, spec in template["Parameters"].items():
        local.refs[name] = str(parameters.get(name, spec.get("Default", "")))
    return local


def properties(local: LocalStack, name: str) -> dict[str, Any]:
    props: dict[str, Any] = checks.resolve_deep(
        local, local.template["Resources"][name].get("Properties", {})
    )
    return props


@pytest.mark.parametrize("key", ["", KEY_ARN])
def test_every_queue_is_encrypted_at_rest_by_sqs_or_by_the_customer_key(
    template: dict[str, Any], key: str
) -> None:
    local = deployed(template, KmsKeyArn=key)
    queues = resources_of(template, "AWS::SQS::Queue")
    assert queues
    for name in queues:
        props = properties(local, name)
        if key:  # SSE-KMS with the key (SQS refuses both kinds at once)
            assert props.get("KmsMasterKeyId") == key and props.get("SqsManagedSseEnabled") is False, name
        else:
            assert props.get("SqsManagedSseEnabled") is True and "KmsMasterKeyId" not in props, name


# Where each kind of resource names the key that encrypts it.
KEY_PROPERTY = {
    "AWS::DynamoDB::Table": ("SSESpecification", "KMSMasterKeyId"),
    "AWS::SQS::Queue": ("KmsMasterKeyId",),
    "AWS::Logs::LogGroup": ("KmsKeyId",),
    "AWS::SecretsManager::Secret": ("KmsKeyId",),
}


def key_of(props: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = props
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def test_with_a_customer_key_every_table_queue_log_group_and_secret_uses_it(template: dict[str, Any]) -> None:
    with_key, without = deployed(template, KmsKeyArn=KEY_ARN), deployed(template)
    for kind, path in KEY_PROPERTY.items():
        found = resources_of(template, kind)
        assert found, kind
        for name in found:
            assert key_of(properties(with_key, name), path) == KEY_ARN, f"{name} ignores KmsKeyArn"
            assert key_of(properties(without, name), path) is None, f"{name} names a key without KmsKeyArn"
    for name in resources_of(template, "AWS::DynamoDB::Table"):  # else DynamoDB's AWS managed key
        assert properties(without, name)["SSESpecification"]["SSEEnabled"] is True, name
    glob = template["Globals"]["Function"]  # the functions' environment
    assert checks.resolve_deep(with_key, glob)["KmsKeyArn"] == KEY_ARN
    assert "KmsKeyArn" not in checks.resolve_deep(without, glob)
    assert all("KmsKeyArn" not in props for props in functions(template).values())


@pytest.mark.parametrize("function", sorted(SCENARIOS))
def test_a_role_may_use_the_customer_key_only_when_one_is_set(
    template: dict[str, Any], function: str
) -> None:
    statements = checks.role_statements(template, function)
    with_key = checks.resolve_deep(deployed(template, KmsKeyArn=KEY_ARN), statements)
    without = checks.resolve_deep(deployed(template), statements)
    other = "arn:aws:kms:us-east-1:123456789012:key/someone-elses"
    for action in ("kms:Decrypt", "kms:GenerateDataKey"):
        assert checks.allowed(with_key, action, KEY_ARN), f"{function}: {action}"
        assert not checks.allowed(with_key, action, other), f"{function}: {action} on any key"
        assert not checks.allowed(without, action, KEY_ARN), f"{function}: {action} with no key set"


def test_the_ecs_worker_may_use_the_customer_key_only_when_one_is_set() -> None:
    stack = load_template(INFRA_TEMPLATES[0])
    statements = [
        s
        for p in stack["Resources"]["TaskRole"]["Properties"]["Policies"]
        for s in p["PolicyDocument"]["Statement"]
    ]
    with_key = checks.resolve_deep(deployed(stack, KmsKeyArn=KEY_ARN), statements)
    without = checks.resolve_deep(deployed(stack), statements)
    assert checks.allowed(with_key, "kms:Decrypt", KEY_ARN) and checks.allowed(
        with_key, "kms:GenerateDataKey", KEY_ARN
    )
    assert not checks.allowed(without, "kms:Decrypt", KEY_ARN)
    for name in resources_of(stack, "AWS::Logs::LogGroup"):
        assert properties(deployed(stack, KmsKeyArn=KEY_ARN), name)["KmsKeyId"] == KEY_ARN, name


def test_the_websocket_stage_writes_an_access_log_without_keys(template: dict[str, Any]) -> None:
    (stage,) = resources_of(template, "AWS::ApiGatewayV2::Stage").values()
    settings = stage["Properties"]["AccessLogSettings"]
    group = template["Resources"][settings["DestinationArn"]["Fn::GetAtt"][0]]
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    fields = json.loads(settings["Format"])  # one JSON object per line
    assert {"$context.requestId", "$context.connectionId", "$context.routeKey", "$context.status"} <= set(
        fields.values()
    )
    # The connect carries the key in its query string: nothing that could log it.
    assert not re.search(r"token|querystring|header|authoriz|apikey", settings["Format"], re.IGNORECASE)


@pytest.mark.parametrize(("choice", "creates"), [("create", True), ("existing", False)])
def test_the_websocket_access_log_has_the_account_role_it_needs(
    template: dict[str, Any], choice: str, creates: bool
) -> None:
    """API Gateway refuses a WebSocket access log until its account-wide CloudWatch role is set."""
    (account_name, account) = next(iter(resources_of(template, "AWS::ApiGateway::Account").items()))
    assert deployed(template, ApiGatewayLogsRole=choice).condition(account["Condition"]) is creates
    role = template["Resources"][account["Properties"]["CloudWatchRoleArn"]["Fn::GetAtt"][0]]
    assert role["Condition"] == account["Condition"]
    assert role["DeletionPolicy"] == "Retain"  # other APIs of the account may log through it by then
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "apigateway.amazonaws.com"}
    (stage,) = resources_of(template, "AWS::ApiGatewayV2::Stage").values()
    assert json.dumps({"Ref": account_name}) in json.dumps(stage), "the stage must wait for the setting"


class _Value(float):
    """A datapoint in metric math: dividing by zero gives no number (NaN), not an exception."""

    def __truediv__(self, other: float) -> "_Value":
        return _Value(float("nan") if other == 0 else float(self) / other)

    def __mul__(self, other: float) -> "_Value":
        return _Value(float(self) * other)

    __rmul__ = __mul__


def metric_math(expression: str, **datapoints: float | None) -> float:
    """The value of a CloudWatch metric-math expression (the IF/FILL/arithmetic subset) for one
    period; None is a metric with no datapoint in it."""
    functions_ = {"IF": lambda c, a, b: a if c else b, "FILL": lambda v, d: _Value(d if v is None else v)}
    values = {name: None if v is None else _Value(v) for name, v in datapoints.items()}
    return float(eval(expression, {"__builtins__": {}}, {**functions_, **values}))


def returned(alarm: dict[str, Any]) -> dict[str, Any]:
    (result,) = [m for m in alarm["Metrics"] if m.get("ReturnData", True)]
    return result


def test_the_http_api_5xx_rate_alarm_fires_on_errors_not_on_quiet(template: dict[str, Any]) -> None:
    alarm = template["Resources"]["HttpApi5xxRateAlarm"]["Properties"]
    api = [{"Name": "ApiId", "Value": {"Ref": "HttpApi"}}]
    stats = {m["Id"]: m["MetricStat"] for m in alarm["Metrics"] if "MetricStat" in m}
    assert {(s["Metric"]["Namespace"], s["Metric"]["MetricName"], s["Stat"]) for s in stats.values()} == {
        ("AWS/ApiGateway", "5xx", "Sum"),
        ("AWS/ApiGateway", "Count", "Sum"),
    }
    assert all(s["Metric"]["Dimensions"] == api for s in stats.values())
    errors, requests = (
        next(i for i, s in stats.items() if s["Metric"]["MetricName"] == n) for n in ("5xx", "Count")
    )
    threshold = float(template["Parameters"][alarm["Threshold"]["Ref"]]["Default"])
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["TreatMissingData"] == "notBreaching"  # no requests at all: no datapoints

    def rate(e: float | None, r: float | None) -> float:
        return metric_math(returned(alarm)["Expression"], **{errors: e, requests: r})

    assert rate(None, 0) <= threshold and rate(0, 0) <= threshold  # quiet
    assert rate(None, 500) <= threshold and rate(1, 1000) <= threshold  # healthy
    assert rate(5, 100) > threshold and rate(1, 1) > threshold  # failing


def test_the_abandoned_prompts_alarm_reads_the_series_the_consumer_emits(
    template: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An alarm's metric must match an emitted series exactly, dimensions included: the consumer's
    per-model PromptsAbandoned alone cannot be alarmed on across models."""
    from promptsvc.consumer import telemetry

    environment = template["Globals"]["Function"]["Environment"]["Variables"]
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", environment["POWERTOOLS_SERVICE_NAME"])
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", environment["POWERTOOLS_METRICS_NAMESPACE"])
    capsys.readouterr()
    telemetry.outcome("abandoned", "some-model")
    telemetry.outcome("abandoned", "another-model")
    emitted: dict[tuple[str, str, frozenset[tuple[str, str]]], float] = {}
    for line in capsys.readouterr().out.splitlines():
        document = json.loads(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                for dimensions in directive["Dimensions"]:
                    series = (
                        directive["Namespace"],
                        metric["Name"],
                        frozenset((d, document[d]) for d in dimensions),
                    )
                    emitted[series] = emitted.get(series, 0) + sum(document[metric["Name"]])

    alarm = template["Resources"]["PromptsAbandonedAlarm"]["Properties"]
    stats = {m["Id"]: m["MetricStat"] for m in alarm["Metrics"] if "MetricStat" in m}
    (consumer,) = [i for i, s in stats.items() if s["Metric"]["MetricName"] == "PromptsAbandoned"]
    metric = stats[consumer]["Metric"]
    watched = (
        metric["Namespace"],
        "PromptsAbandoned",
        frozenset((d["Name"], d["Value"]) for d in metric["Dimensions"]),
    )
    assert emitted.get(watched) == 2, f"the alarm watches {watched}, the consumer emits {sorted(emitted)}"

    # The sweeper's count (Powertools Metrics: the service dimension alone), added in.
    (sweeper,) = [i for i, s in stats.items() if s["Metric"]["MetricName"] == "DeadLettersAbandoned"]
    assert stats[sweeper]["Metric"]["Dimensions"] == metric["Dimensions"]
    assert '"DeadLettersAbandoned"' in (ROOT / "functions" / "deadletter" / "app.py").read_text()
    threshold = float(template["Parameters"][alarm["Threshold"]["Ref"]]["Default"])
    expression = returned(alarm)["Expression"]
    assert metric_math(expression, **{consumer: None, sweeper: 0}) <= threshold
    assert metric_math(expression, **{consumer: 1, sweeper: None}) > threshold
    assert metric_math(expression, **{consumer: None, sweeper: 1}) > threshold


@pytest.mark.parametrize(
    ("backend", "reserved"), [("sagemaker", "7"), ("none", 0), ("ecs", 0), ("mock", NO_VALUE)]
)
def test_the_consumer_reserves_what_the_endpoints_are_sized_for(
    template: dict[str, Any], backend: str, reserved: object
) -> None:
    local = deployed(template, InferenceBackend=backend, ConsumerConcurrency="7")
    props = functions(template)["ConsumerFunction"]
    assert local.resolve(props["ReservedConcurrentExecutions"]) == reserved
    scaling = props["Events"]["Prompts"]["Properties"]["ScalingConfig"]["MaximumConcurrency"]
    assert local.resolve(scaling) == "7"  # never above the reserve: the queue would be throttled


@pytest.mark.parametrize("path", [TEMPLATE, *INFRA_TEMPLATES], ids=lambda p: p.name)
def test_every_checkov_skip_gives_its_reason(path: Path) -> None:
    skips = [
        (name, skip)
        for name, resource in load_template(path)["Resources"].items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    for name, skip in skips:
        assert re.fullmatch(r"CKV2?_AWS_\d+", skip["id"]), f"{name}: {skip}"
        reason = str(skip.get("comment", ""))
        assert len(reason) >= 30 and "\n" not in reason, (
            f"{name} skips {skip['id']} without a one-line reason"
        )


# ---------------------------------------------------------------------------------------------
# the ECS GPU stack's scaling (infra/ecs-gpu/stack.yaml) and what the worker publishes

QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:promptsvc-prompts"
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/promptsvc-prompts"


def ecs_stack() -> dict[str, Any]:
    return load_template(INFRA_TEMPLATES[0])


def metric_stats(stack: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every MetricStat of the stack's scaling policies and alarms, by the resource's name."""
    found = []
    for name, resource in stack["Resources"].items():
        props = resource.get("Properties", {})
        config = props.get("TargetTrackingScalingPolicyConfiguration", {})
        queries = config.get("CustomizedMetricSpecification", {}).get("Metrics", props.get("Metrics", []))
        found += [(name, q["MetricStat"]) for q in queries if "MetricStat" in q]
    return found


Readings = dict[str, float | None]


def lane(queue: str, fast: Readings, bulk: Readings | None) -> Readings:
    """The readings of the queue a metric names: the bulk lane's (none, unless given), or the rest."""
    return (bulk or {}) if queue == "PromptsBulkQueueArn" else fast


def dimension_value(value: Any) -> str:
    """A dimension's value, with the stack's !Select [5, !Split [":", !Ref PromptsQueueArn]]."""
    if value == {"Fn::Select": [5, {"Fn::Split": [":", {"Ref": "PromptsQueueArn"}]}]}:
        return QUEUE_ARN.split(":")[5]
    assert isinstance(value, str), value
    return value


def test_the_ecs_scaling_reads_the_prompts_running_series_the_worker_publishes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Namespace, name and every dimension of the series the stack reads are those the worker's
    EMF documents carry, with the environment the stack's task definition gives the worker."""
    from promptsvc.consumer.fleet_metrics import METRIC_NAME, FleetMetrics

    stack = ecs_stack()
    (worker,) = [
        c
        for c in stack["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
        if c["Name"] == "worker"
    ]
    environment = {
        e["Name"]: e["Value"] for e in worker["Environment"] if isinstance(e, dict) and "Name" in e
    }
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    for name in ("POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"):
        monkeypatch.setenv(name, environment[name])
    capsys.readouterr()
    now = [float(int(time.time()) // 60 * 60 - 120)]
    metrics = FleetMetrics.for_queue_url(QUEUE_URL)
    metrics._clock = lambda: now[0]
    metrics.sample(3)
    now[0] += 60
    metrics.sample(0)
    emitted = set()
    for line in capsys.readouterr().out.splitlines():
        document = json.loads(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                for dimensions in directive["Dimensions"]:
                    emitted.add(
                        (
                            directive["Namespace"],
                            metric["Name"],
                            frozenset((d, document[d]) for d in dimensions),
                        )
                    )

    read = [(name, stat) for name, stat in metric_stats(stack) if stat["Metric"]["MetricName"] == METRIC_NAME]
    assert {name for name, _ in read} == {"BacklogPerTaskScaling", "FirstPromptWaitAlarm"}
    for name, stat in read:
        metric = stat["Metric"]
        series = (
            metric["Namespace"],
            metric["MetricName"],
            frozenset((d["Name"], dimension_value(d["Value"])) for d in metric["Dimensions"]),
        )
        assert series in emitted, f"{name} reads {series}, the worker emits {emitted}"
        assert stat["Stat"] == "Sum", name  # one datapoint per task per minute: their sum is the fleet's


def test_the_ecs_fleet_scales_on_work_that_can_run_now_not_on_messages_in_backoff() -> None:
    from promptsvc_dev.scaling_rules import load_scaling_rules

    stack = ecs_stack()
    config = stack["Resources"]["BacklogPerTaskScaling"]["Properties"][
        "TargetTrackingScalingPolicyConfiguration"
    ]
    read = {s["Metric"]["MetricName"] for n, s in metric_stats(stack) if n == "BacklogPerTaskScaling"}
    assert read == {"ApproximateNumberOfMessagesVisible", "PromptsRunning", "DesiredTaskCount"}
    assert config["DisableScaleIn"] is True  # RemoveTaskScaling scales in, on every message
    rules = load_scaling_rules(INFRA_TEMPLATES[0])
    target = rules.target_tracking.target

    def tracked(
        visible: float | None, running: float | None, desired: float | None, bulk: Readings | None = None
    ) -> float | None:
        values = {"ApproximateNumberOfMessagesVisible": visible, "PromptsRunning": running}
        values["DesiredTaskCount"] = desired
        return rules.target_tracking.metric.value(
            lambda _ns, name, _stat, queue: lane(queue, values, bulk).get(name)
        )

    assert tracked(0, 2 * target, 2) == target  # every task at target
    waiting_on_both = {"ApproximateNumberOfMessagesVisible": 2 * target}
    assert tracked(2 * target, 2 * target, 2, waiting_on_both) == 3 * target  # the bulk lane waits too
    assert tracked(4 * target, 2 * target, 2) == 3 * target  # a backlog: scale out
    assert tracked(0, None, 0) == 0  # no task: no PromptsRunning datapoint, read as 0
    assert tracked(2 * target, None, None) == 2 * target  # at zero: never a division by 0
    # An engine outage: nothing runs, the prompts wait out their backoff (not visible): no scale-out.
    assert (tracked(0, 3, 2) or 0) < target

    (remove,) = [a for a in rules.alarms if a.policy and a.policy.name == "RemoveTaskScaling"]
    assert remove.policy is not None and remove.policy.adjustment_type == "ChangeInCapacity"
    assert [s.adjustment for s in remove.policy.steps] == [-1]
    assert remove.policy.cooldown > 120  # fresh DesiredTaskCount datapoints before the next one goes

    def removes(visible: float, hidden: float, desired: float, bulk: Readings | None = None) -> bool:
        values = {
            "ApproximateNumberOfMessagesVisible": visible,
            "ApproximateNumberOfMessagesNotVisible": hidden,
        }
        values["DesiredTaskCount"] = desired
        value = remove.metric.value(lambda _ns, name, _stat, queue: lane(queue, values, bulk).get(name))
        return value is not None and remove.breaches(value)

    assert removes(0, 10, 3)  # little work for three tasks
    assert not removes(0, 10, 3, {"ApproximateNumberOfMessagesNotVisible": 3 * target})  # the bulk lane's
    assert not removes(0, 3 * target, 3)  # two tasks would be over target
    assert not removes(0, 500, 2)  # an outage: 500 prompts wait out their backoff; keep the tasks
    assert not removes(0, 0, 1)  # never the last task: StopLastTaskScaling does that


def test_the_ecs_fleet_scales_to_zero_and_starts_again_from_zero() -> None:
    from promptsvc_dev.scaling_rules import load_scaling_rules

    stack = ecs_stack()
    parameters = stack["Parameters"]
    assert parameters["MinTasks"]["MinValue"] == 0 and parameters["MinTasks"]["Default"] == 0
    assert stack["Resources"]["ScalableTarget"]["Properties"]["MinCapacity"] == {"Ref": "MinTasks"}
    rules = load_scaling_rules(INFRA_TEMPLATES[0])
    by_policy = {a.policy.name: a for a in rules.alarms if a.policy}

    start = by_policy["StartFirstTaskScaling"]
    assert start.policy is not None and start.policy.adjustment_type == "ChangeInCapacity"
    assert [s.adjustment for s in start.policy.steps] == [1]

    def starts(visible: float | None, desired: float | None, bulk: Readings | None = None) -> bool:
        values = {"ApproximateNumberOfMessagesVisible": visible, "DesiredTaskCount": desired}
        value = start.metric.value(lambda _ns, name, _stat, queue: lane(queue, values, bulk).get(name))
        return value is not None and start.breaches(value)

    assert starts(1, 0) and starts(3, None)  # prompts wait, no task asked for
    assert starts(0, 0, {"ApproximateNumberOfMessagesVisible": 1})  # on the bulk lane only
    assert not starts(3, 1)  # a task is asked for: target tracking takes it from there
    assert not starts(0, 0)

    stop = by_policy["StopLastTaskScaling"]
    assert stop.policy is not None and stop.policy.adjustment_type == "ExactCapacity"
    assert [s.adjustment for s in stop.policy.steps] == [0]
    quiet = stack["Resources"]["QueueQuietAlarm"]["Properties"]
    assert quiet["EvaluationPeriods"] == quiet["DatapointsToAlarm"] == {"Ref": "ScaleInQuietMinutes"}
    assert stop.missing == "breaching"  # SQS publishes nothing for a queue idle for 6 hours

    def quiet_minute(visible: float | None, hidden: float | None, bulk: Readings | None = None) -> bool:
        values = {
            "ApproximateNumberOfMessagesVisible": visible,
            "ApproximateNumberOfMessagesNotVisible": hidden,
        }
        value = stop.metric.value(lambda _ns, name, _stat, queue: lane(queue, values, bulk).get(name))
        return stop.missing == "breaching" if value is None else stop.breaches(value)

    assert quiet_minute(0, 0) and quiet_minute(None, None)
    assert not quiet_minute(0, 1)  # a prompt running, or waiting out a retry's backoff
    assert not quiet_minute(2, 0)
    assert not quiet_minute(0, 0, {"ApproximateNumberOfMessagesNotVisible": 1})  # a bulk-lane prompt


@pytest.mark.parametrize("topic", ["", "arn:aws:sns:us-east-1:123456789012:alarms"])
def test_the_first_prompts_wait_from_zero_is_alarmed_on(topic: str) -> None:
    from promptsvc_dev.scaling_rules import MetricMath

    stack = ecs_stack()
    alarm = properties(deployed(stack, AlarmTopicArn=topic), "FirstPromptWaitAlarm")
    assert (
        alarm["EvaluationPeriods"]
        == alarm["DatapointsToAlarm"]
        == str(stack["Parameters"]["FirstPromptWaitAlarmMinutes"]["Default"])
    )
    assert alarm.get("AlarmActions", []) == ([topic] if topic else [])
    waiting = MetricMath(returned(alarm)["Expression"])
    assert waiting({"visible": 5, "bulk_visible": None, "running": None}) == 1  # waiting, none runs
    assert waiting({"visible": None, "bulk_visible": 5, "running": None}) == 1  # on the bulk lane
    assert waiting({"visible": 5, "bulk_visible": 0, "running": 12}) == 0
    assert waiting({"visible": 0, "bulk_visible": 0, "running": None}) == 0
