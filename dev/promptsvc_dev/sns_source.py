"""What SNS does for a Lambda subscriber, for the local stack and tests.

moto delivers a topic's messages to SQS subscriptions (not to Lambda functions), so the function's
topics (its `SNS` events in template.yaml) are subscribed to one local queue, and an SQS event
source (sqs_source.py) polls it: each message there is the SNS envelope SNS delivers (`Type`,
`MessageId`, `TopicArn`, `Message`, ...), which becomes the record of an `aws:sns` event of the
shape Lambda hands a subscribed function, one record per invocation as SNS invokes. A handler that
raises has its message delivered again (Lambda's retries of an asynchronous invocation).
"""

import json
from typing import Any

from promptsvc.adapters.clients import client

from promptsvc_dev.sqs_source import Handler, SqsEventSource


def function_topics(stack: Any, function: str) -> list[str]:
    """The ARNs of the topics whose SNS events invoke `function` in the template."""
    events = stack.template["Resources"][function]["Properties"].get("Events", {})
    return [
        stack.resolve(event["Properties"]["Topic"]) for event in events.values() if event["Type"] == "SNS"
    ]


def subscribe_queue(topics: list[str], name: str) -> str:
    """A queue subscribed to every topic of `topics` (envelopes, not raw); its URL."""
    sqs = client("sqs")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for topic in topics:
        client("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return str(url)


def sns_record(envelope: dict[str, Any]) -> dict[str, Any]:
    """The Lambda event record of one SNS delivery (its envelope as SNS sends it to SQS)."""
    topic = envelope.get("TopicArn", "")
    return {
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": f"{topic}:local",
        "Sns": {
            "Type": envelope.get("Type", "Notification"),
            "MessageId": envelope.get("MessageId", ""),
            "TopicArn": topic,
            "Subject": envelope.get("Subject"),
            "Message": envelope.get("Message", ""),
            "Timestamp": envelope.get("Timestamp", ""),
            "SignatureVersion": envelope.get("SignatureVersion", "1"),
            "Signature": envelope.get("Signature", ""),
            "SigningCertUrl": envelope.get("SigningCertURL", ""),
            "UnsubscribeUrl": envelope.get("UnsubscribeURL", ""),
            "MessageAttributes": envelope.get("MessageAttributes", {}),
        },
    }


def sns_handler(handler: Handler) -> Handler:
    """An SQS-event handler that invokes `handler` with one SNS event per message; a message
    whose invocation raised is reported as a batch item failure (delivered again)."""

    def deliver(event: dict[str, Any], context: Any) -> dict[str, Any]:
        failures = []
        for record in event["Records"]:
            try:
                handler({"Records": [sns_record(json.loads(record["body"]))]}, context)
            except Exception:
                failures.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failures}

    return deliver


def sns_event_source(stack: Any, function: str, handler: Handler, **options: Any) -> SqsEventSource:
    """An event source feeding `function`'s handler what its topics publish."""
    queue = subscribe_queue(function_topics(stack, function), f"{function}-sns-deliveries")
    return SqsEventSource(queue, sns_handler(handler), function_name=function, **options)
