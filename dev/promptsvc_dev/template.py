"""Reads template.yaml and creates its tables, queues, secrets, buckets and topics in moto, from
their own definitions.

So that code and template cannot drift, `promptsvc dev` and the tests never hand-write a table:
they create what the template declares, and give each function the environment the template gives
it, with `!Ref`/`!GetAtt`/`!Sub` resolved to the local resources (a resource's physical name
locally is its logical id).
"""

import json
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from promptsvc.adapters.clients import client

NO_VALUE = object()  # AWS::NoValue: the property is left out


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that turns CloudFormation short tags (`!Ref X`) into `{"Ref": "X"}` forms."""


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_CfnLoader)


def find_template(start: Path | None = None) -> Path:
    """template.yaml of the checkout this package lives in (or above `start`)."""
    candidates = [start or Path.cwd(), Path(__file__).resolve()]
    for origin in candidates:
        for folder in [origin, *origin.parents]:
            if (folder / "template.yaml").is_file():
                return folder / "template.yaml"
    raise FileNotFoundError("template.yaml not found; run from a promptsvc checkout")


@dataclass
class LocalStack:
    """What was created: physical ids and attributes by logical id, and the parameter values."""

    region: str
    account: str = "123456789012"
    refs: dict[str, str] = field(default_factory=dict)
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)
    template: dict[str, Any] = field(default_factory=dict)

    def resolve(self, value: Any) -> Any:
        """Resolve the intrinsic functions a function's environment uses."""
        if isinstance(value, dict) and len(value) == 1:
            ((name, arg),) = value.items()
            if name == "Ref":
                return NO_VALUE if arg == "AWS::NoValue" else self.refs.get(arg, arg)
            if name == "Fn::GetAtt":
                return self.attributes[(arg[0], arg[1])]
            if name == "Fn::Sub":
                return self._sub(arg)
            if name == "Fn::If":
                condition, when_true, when_false = arg
                return self.resolve(when_true if self.condition(condition) else when_false)
        return value

    def condition(self, name: str) -> bool:
        return self._evaluate(self.template.get("Conditions", {})[name])

    def _evaluate(self, expression: Any) -> bool:
        ((name, arg),) = expression.items()
        if name == "Fn::Equals":
            return str(self.resolve(arg[0])) == str(self.resolve(arg[1]))
        if name == "Fn::Not":
            return not self._evaluate(arg[0])
        if name == "Fn::And":
            return all(self._evaluate(a) for a in arg)
        if name == "Fn::Or":
            return any(self._evaluate(a) for a in arg)
        if name in ("Condition", "Fn::Condition"):  # the long form, and the loader's `!Condition`
            return self.condition(arg)
        raise ValueError(f"unsupported condition function {name}")

    def _sub(self, text: str) -> str:
        def replace(match: re.Match[str]) -> str:
            token = match.group(1)
            if "." in token:
                logical, attribute = token.split(".", 1)
                return self.attributes[(logical, attribute)]
            return str(self.refs.get(token, token))

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def function_environment(self, logical_id: str) -> dict[str, str]:
        """The environment template.yaml gives a function: Globals, then the function's own."""
        glob = self.template.get("Globals", {}).get("Function", {})
        own = self.template["Resources"][logical_id]["Properties"]
        variables = {
            **glob.get("Environment", {}).get("Variables", {}),
            **own.get("Environment", {}).get("Variables", {}),
        }
        resolved = {name: self.resolve(value) for name, value in variables.items()}
        return {name: str(value) for name, value in resolved.items() if value is not NO_VALUE}

    def functions(self) -> list[str]:
        return [
            logical
            for logical, resource in self.template["Resources"].items()
            if resource["Type"] == "AWS::Serverless::Function"
        ]


def create_resources(
    template_path: Path, region: str = "us-east-1", parameters: dict[str, str] | None = None
) -> LocalStack:
    """Create every table, queue, secret, bucket and topic of the template in the (moto) account
    boto3 points at."""
    template = load_template(template_path)
    stack = LocalStack(region=region, template=template)
    stack.refs.update(
        {
            "AWS::Region": region,
            "AWS::AccountId": stack.account,
            "AWS::URLSuffix": "localhost",
            "AWS::Partition": "aws",
        }
    )
    for name, spec in template.get("Parameters", {}).items():
        stack.refs[name] = str((parameters or {}).get(name, spec.get("Default", "")))
    resources = template["Resources"]
    # Queues first, dead-letter queues before the queues that redrive to them.
    ordered = sorted(resources.items(), key=lambda kv: "RedrivePolicy" in kv[1].get("Properties", {}))
    for logical, resource in ordered:
        kind, props = resource["Type"], resource.get("Properties", {})
        if kind == "AWS::SQS::Queue":
            _create_queue(stack, logical, props)
        elif kind == "AWS::DynamoDB::Table":
            _create_table(stack, logical, props)
        elif kind == "AWS::SecretsManager::Secret":
            _create_secret(stack, logical, props)
        elif kind == "AWS::S3::Bucket":
            _create_bucket(stack, logical, props)
        elif kind == "AWS::SNS::Topic":
            _create_topic(stack, logical, props)
    return stack


def _create_queue(stack: LocalStack, logical: str, props: dict[str, Any]) -> None:
    attributes: dict[str, str] = {}
    for name in (
        "VisibilityTimeout",
        "MessageRetentionPeriod",
        "DelaySeconds",
        "ReceiveMessageWaitTimeSeconds",
    ):
        if name in props:
            attributes[name] = str(props[name])
    if "RedrivePolicy" in props:
        policy = {k: stack.resolve(v) for k, v in props["RedrivePolicy"].items()}
        attributes["RedrivePolicy"] = json.dumps(policy)
    sqs = client("sqs")
    url = sqs.create_queue(QueueName=props.get("QueueName", logical), Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    stack.refs[logical] = url
    stack.attributes[(logical, "Arn")] = arn
    stack.attributes[(logical, "QueueName")] = url.rsplit("/", 1)[-1]
    stack.attributes[(logical, "QueueUrl")] = url


def _create_table(stack: LocalStack, logical: str, props: dict[str, Any]) -> None:
    name = props.get("TableName", logical)
    args: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
    }
    if props.get("GlobalSecondaryIndexes"):
        args["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    if props.get("StreamSpecification"):
        args["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
    dynamodb = client("dynamodb")
    description = dynamodb.create_table(**args)["TableDescription"]
    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        dynamodb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True}
        )
    stack.refs[logical] = name
    stack.attributes[(logical, "Arn")] = description["TableArn"]
    if "LatestStreamArn" in description:
        stack.attributes[(logical, "StreamArn")] = description["LatestStreamArn"]


def _create_secret(stack: LocalStack, logical: str, props: dict[str, Any]) -> None:
    generate = props.get("GenerateSecretString", {})
    value = props.get("SecretString") or secrets.token_urlsafe(generate.get("PasswordLength", 32))
    arn = client("secretsmanager").create_secret(Name=props.get("Name", logical), SecretString=value)["ARN"]
    stack.refs[logical] = arn
    stack.attributes[(logical, "Id")] = arn


def _create_bucket(stack: LocalStack, logical: str, props: dict[str, Any]) -> None:
    """The bucket with its encryption, public access block and expiry. (Its bucket policy, TLS
    only, is not applied: the local endpoint is plain HTTP on 127.0.0.1.)"""
    name = props.get("BucketName", logical.lower())  # bucket names are lower case
    s3 = client("s3")
    s3.create_bucket(Bucket=name)
    encryption = props.get("BucketEncryption")
    if encryption:
        # CloudFormation's names for the API's Rules and ApplyServerSideEncryptionByDefault
        encryption_rules = [
            {
                "ApplyServerSideEncryptionByDefault": {
                    setting: resolved
                    for setting, value in rule["ServerSideEncryptionByDefault"].items()
                    if (resolved := stack.resolve(value)) is not NO_VALUE
                },
                **({"BucketKeyEnabled": rule["BucketKeyEnabled"]} if "BucketKeyEnabled" in rule else {}),
            }
            for rule in encryption["ServerSideEncryptionConfiguration"]
        ]
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": encryption_rules})
    block = props.get("PublicAccessBlockConfiguration")
    if block:
        s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=block)
    expiry_rules = [
        {
            "ID": rule.get("Id", f"rule-{index}"),
            "Status": rule["Status"],
            "Filter": {"Prefix": rule.get("Prefix", "")},
            "Expiration": {"Days": int(stack.resolve(rule["ExpirationInDays"]))},
        }
        for index, rule in enumerate(props.get("LifecycleConfiguration", {}).get("Rules", []))
        if "ExpirationInDays" in rule
    ]
    if expiry_rules:
        s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": expiry_rules})
    stack.refs[logical] = name
    stack.attributes[(logical, "Arn")] = f"arn:aws:s3:::{name}"


def _create_topic(stack: LocalStack, logical: str, props: dict[str, Any]) -> None:
    """The topic (its KMS key is not applied: moto does not encrypt). Its Ref is its ARN."""
    arn = client("sns").create_topic(Name=props.get("TopicName", logical))["TopicArn"]
    stack.refs[logical] = arn
    stack.attributes[(logical, "TopicArn")] = arn
    stack.attributes[(logical, "TopicName")] = logical
