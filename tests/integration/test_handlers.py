"""The Lambda handlers in functions/, invoked with the real-shaped payloads in events/."""

import json
import time
from pathlib import Path

from fastapi.testclient import TestClient
from promptsvc import wiring
from promptsvc.adapters.clients import client as aws_client
from promptsvc.adapters.prompt_queue import message_body
from promptsvc.domain.clock import now_rfc3339
from promptsvc.settings import Settings
from promptsvc_dev.functions import LambdaContext, load_handler_module
from promptsvc_dev.template import LocalStack

from tests.conftest import ROOT
from tests.integration.helpers import add

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


def test_a_consumer_batch_whose_every_message_is_kept_is_an_answer_not_a_failed_invocation(
    local_stack: LocalStack, client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    """Every message of the batch belongs to a prompt another consumer is running (its lease
    live): each is reported back to the queue, and the invocation succeeds (a raised error would
    count as a Lambda error and trip the errors alarm for a normal state of the queue)."""
    prompt = add(client, keys["alice"])
    lease_until = int((time.time() + 600) * 1000)
    assert wiring.prompt_store(settings).claim_waiting(prompt["id"], "alice", now_rfc3339(), lease_until)
    consumer = load_handler_module(ROOT, "consumer")
    payload = event("consumer-sqs-batch.json")
    payload["Records"][0]["body"] = message_body(prompt["id"], "alice")

    response = consumer.lambda_handler(payload, LambdaContext(function_name="ConsumerFunction"))

    assert response == {"batchItemFailures": [{"itemIdentifier": payload["Records"][0]["messageId"]}]}
