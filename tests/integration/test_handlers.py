"""The Lambda handlers in functions/, invoked with the real-shaped payloads in events/."""

import json
from pathlib import Path

from promptsvc.adapters.clients import client as aws_client
from promptsvc.adapters.prompt_queue import message_body
from promptsvc_dev.functions import LambdaContext, load_handler_module
from promptsvc_dev.template import LocalStack

from tests.conftest import ROOT

EVENTS = ROOT / "events"


def event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def test_api_handler_serves_an_http_api_v2_event_through_mangum(
    local_stack: LocalStack, keys: dict[str, str]
) -> None:
    api = load_handler_module(ROOT, "api")
    payload = event("api-add-prompt.json")
    payload["headers"]["authorization"] = f"Bearer {keys['alice']}"

    response = api.handler(payload, LambdaContext(function_name="ApiFunction"))

    assert response["statusCode"] == 200
    assert response["headers"]["content-type"] == "application/json"
    body = json.loads(response["body"])
    assert body["prompt"]["prompt"] == "What's a banana?"
    assert body["prompt"]["threadId"] == "thread-1"
    assert body["prompt"]["userId"] == "alice"


def test_api_handler_answers_401_json_without_a_key(local_stack: LocalStack) -> None:
    api = load_handler_module(ROOT, "api")
    payload = event("api-add-prompt.json")
    del payload["headers"]["authorization"]

    response = api.handler(payload, LambdaContext(function_name="ApiFunction"))

    assert response["statusCode"] == 401
    assert "API key" in json.loads(response["body"])["error"]


def test_consumer_handler_dead_letters_a_message_that_is_not_ours(local_stack: LocalStack) -> None:
    consumer = load_handler_module(ROOT, "consumer")
    payload = event("consumer-sqs-batch.json")
    good = payload["Records"][0]
    payload["Records"].append({**good, "messageId": "not-ours", "body": '{"hello": 1}'})

    response = consumer.lambda_handler(payload, LambdaContext(function_name="ConsumerFunction"))

    # The example prompt does not exist: nothing to run. The malformed one goes to the DLQ.
    assert response == {"batchItemFailures": []}
    dead = aws_client("sqs").receive_message(
        QueueUrl=local_stack.refs["PromptsDeadLetterQueue"], MessageAttributeNames=["All"]
    )["Messages"]
    assert [m["Body"] for m in dead] == ['{"hello": 1}']
    assert "not a prompt message" in dead[0]["MessageAttributes"]["reason"]["StringValue"]


def test_dead_letter_handler_abandons_the_prompts_of_dead_lettered_messages(
    local_stack: LocalStack, keys: dict[str, str]
) -> None:
    api = load_handler_module(ROOT, "api")
    payload = event("api-add-prompt.json")
    payload["headers"]["authorization"] = f"Bearer {keys['alice']}"
    prompt_id = json.loads(api.handler(payload, LambdaContext())["body"])["prompt"]["id"]
    dlq = local_stack.refs["PromptsDeadLetterQueue"]
    aws_client("sqs").send_message(QueueUrl=dlq, MessageBody=message_body(prompt_id, "alice"))
    aws_client("sqs").send_message(QueueUrl=dlq, MessageBody="garbage")
    sweeper = load_handler_module(ROOT, "deadletter")

    report = sweeper.lambda_handler(
        event("deadletter-schedule.json"), LambdaContext(function_name="DeadLetter")
    )

    assert report == {"read": 2, "abandoned": 1, "unreadable": 1, "requeued": 0}
    stored = aws_client("dynamodb").get_item(
        TableName=local_stack.refs["PromptsTable"], Key={"pk": {"S": f"alice#{prompt_id}"}}
    )
    assert stored["Item"]["status"]["S"] == "abandoned"
    assert "dead-letter queue" in stored["Item"]["error"]["S"]
    attributes = aws_client("sqs").get_queue_attributes(QueueUrl=dlq, AttributeNames=["All"])["Attributes"]
    assert int(attributes["ApproximateNumberOfMessagesNotVisible"]) == 2  # left for operators, not deleted


def test_every_function_has_an_event_payload(local_stack: LocalStack) -> None:
    handlers = {
        Path(local_stack.template["Resources"][f]["Properties"]["CodeUri"]).name
        for f in local_stack.functions()
    }
    payloads = {p.name.split("-")[0] for p in EVENTS.glob("*.json")}

    assert handlers <= payloads
    assert aws_client("sqs").list_queues()["QueueUrls"]
