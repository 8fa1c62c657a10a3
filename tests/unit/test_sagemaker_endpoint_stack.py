"""infra/sagemaker/endpoint.yaml in its two modes, read as CloudFormation would with the given
parameters: real-time (InvokeEndpoint, scaled on invocations, never below one instance) and async
(InvokeEndpointAsync with the main stack's bucket and topics, scaled on its backlog and from zero)."""

from pathlib import Path
from typing import Any

import pytest
from promptsvc_dev.template import NO_VALUE, LocalStack, load_template

from tests.deploy import checks

STACK = Path(__file__).resolve().parents[2] / "infra" / "sagemaker" / "endpoint.yaml"
MAIN = Path(__file__).resolve().parents[2] / "template.yaml"
ASYNC = {
    "Mode": "async",
    "AsyncBucket": "main-asyncinferencebucket-1",
    "SuccessTopicName": "main-AsyncSuccessTopic-1",
    "ErrorTopicName": "main-AsyncErrorTopic-1",
    "MinCapacity": "0",
    "ContainerImageUri": "763104351884.dkr.ecr.us-east-1.amazonaws.com/tgi:latest",
}


def deployed(**parameters: str) -> tuple[dict[str, Any], LocalStack]:
    template = load_template(STACK)
    local = LocalStack(region="us-east-1", template=template)
    local.refs.update({"AWS::Region": "us-east-1", "AWS::AccountId": local.account, "AWS::Partition": "aws"})
    for name, spec in template["Parameters"].items():
        local.refs[name] = str(parameters.get(name, spec.get("Default", "")))
    local.attributes[("Endpoint", "EndpointName")] = local.refs["EndpointName"]
    return template, local


def resolve(local: LocalStack, value: Any) -> Any:
    """checks.resolve_deep, with the forms this stack uses besides: Fn::Sub with variables,
    Fn::Select and Fn::Split."""
    if isinstance(value, list):
        return [item for item in (resolve(local, v) for v in value) if item is not NO_VALUE]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((name, arg),) = value.items()
        if name == "Fn::Sub" and isinstance(arg, list):
            text, variables = arg
            for variable, given in variables.items():
                text = text.replace("${" + variable + "}", str(resolve(local, given)))
            return checks.resolve_deep(local, {"Fn::Sub": text})
        if name == "Fn::Select":
            return resolve(local, arg[1])[int(arg[0])]
        if name == "Fn::Split":
            return str(resolve(local, arg[1])).split(arg[0])
        if name == "Fn::If":
            condition, when_true, when_false = arg
            return resolve(local, when_true if local.condition(condition) else when_false)
        if name in ("Ref", "Fn::GetAtt", "Fn::Sub"):
            return checks.resolve_deep(local, value)
    resolved = {key: resolve(local, item) for key, item in value.items()}
    return {key: item for key, item in resolved.items() if item is not NO_VALUE}


def active(template: dict[str, Any], local: LocalStack) -> dict[str, dict[str, Any]]:
    """The resources the parameters create, their properties resolved."""
    return {
        name: resolve(local, resource.get("Properties", {}))
        for name, resource in template["Resources"].items()
        if "Condition" not in resource or local.condition(resource["Condition"])
    }


def test_async_mode_sends_answers_to_the_main_stacks_bucket_and_topics() -> None:
    template, local = deployed(**ASYNC)
    resources = active(template, local)

    config = resources["EndpointConfig"]["AsyncInferenceConfig"]
    assert config["OutputConfig"]["S3OutputPath"] == "s3://main-asyncinferencebucket-1/async/outputs/"
    assert config["OutputConfig"]["S3FailurePath"] == "s3://main-asyncinferencebucket-1/async/failures/"
    assert config["OutputConfig"]["NotificationConfig"] == {
        "SuccessTopic": "arn:aws:sns:us-east-1:123456789012:main-AsyncSuccessTopic-1",
        "ErrorTopic": "arn:aws:sns:us-east-1:123456789012:main-AsyncErrorTopic-1",
    }
    assert "RoutingConfig" not in resources["EndpointConfig"]["ProductionVariants"][0]
    # What the settle function reads and the consumer writes are the prefixes the endpoint uses.
    main = MAIN.read_text()
    assert '"${AsyncInferenceBucket.Arn}/async/outputs/*"' in main
    assert '"${AsyncInferenceBucket.Arn}/async/inputs/*"' in main


def test_async_mode_lets_the_endpoint_read_requests_write_answers_and_notify() -> None:
    template, local = deployed(**ASYNC)
    role = active(template, local)["ExecutionRole"]
    statements = [s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]]
    bucket = "arn:aws:s3:::main-asyncinferencebucket-1"

    assert checks.allowed(statements, "s3:GetObject", f"{bucket}/async/inputs/alice/p/1.json")
    assert checks.allowed(statements, "s3:PutObject", f"{bucket}/async/outputs/x.out")
    assert checks.allowed(statements, "s3:PutObject", f"{bucket}/async/failures/x-error.out")
    assert not checks.allowed(statements, "s3:PutObject", f"{bucket}/async/inputs/alice/p/1.json")
    for topic in ("main-AsyncSuccessTopic-1", "main-AsyncErrorTopic-1"):
        assert checks.allowed(statements, "sns:Publish", f"arn:aws:sns:us-east-1:123456789012:{topic}")


def test_async_mode_scales_on_the_backlog_and_from_zero() -> None:
    template, local = deployed(**ASYNC)
    resources = active(template, local)

    assert resources["ScalableTarget"]["MinCapacity"] == "0"
    backlog = resources["BacklogScalingPolicy"]["TargetTrackingScalingPolicyConfiguration"]
    assert backlog["CustomizedMetricSpecification"]["MetricName"] == "ApproximateBacklogSizePerInstance"
    alarm = resources["HasBacklogWithoutCapacityAlarm"]
    assert alarm["MetricName"] == "HasBacklogWithoutCapacity" and alarm["Threshold"] == 1
    assert template["Resources"]["HasBacklogWithoutCapacityAlarm"]["Properties"]["AlarmActions"] == [
        {"Ref": "ScaleFromZeroPolicy"}
    ]
    step = resources["ScaleFromZeroPolicy"]["StepScalingPolicyConfiguration"]
    assert step["StepAdjustments"] == [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]
    assert "InvocationsScalingPolicy" not in resources  # a per-invocation target means nothing here
    assert '"engine": "sagemaker-async"' in resolve(local, template["Outputs"]["CatalogTarget"]["Value"])


def test_realtime_mode_is_unchanged_and_keeps_an_instance() -> None:
    template, local = deployed()
    resources = active(template, local)

    assert "AsyncInferenceConfig" not in resources["EndpointConfig"]
    variant = resources["EndpointConfig"]["ProductionVariants"][0]
    assert variant["RoutingConfig"] == {"RoutingStrategy": "LEAST_OUTSTANDING_REQUESTS"}
    assert "InvocationsScalingPolicy" in resources
    assert not {"BacklogScalingPolicy", "ScaleFromZeroPolicy", "HasBacklogWithoutCapacityAlarm"} & set(
        resources
    )
    assert len(resources["ExecutionRole"]["Policies"]) == 1  # serve-model only
    rule = template["Rules"]["RealtimeKeepsAnInstance"]
    assert rule["Assertions"][0]["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "MinCapacity"}, "0"]}]}


@pytest.mark.parametrize("missing", ["AsyncBucket", "SuccessTopicName", "ErrorTopicName"])
def test_async_mode_requires_the_bucket_and_both_topics(missing: str) -> None:
    assertions = load_template(STACK)["Rules"]["AsyncNamesItsBucketAndTopics"]["Assertions"]
    assert {"Fn::Not": [{"Fn::Equals": [{"Ref": missing}, ""]}]} in [a["Assert"] for a in assertions]
