"""The Lambda handlers in functions/, invoked with the real-shaped payloads in events/."""

import json
from pathlib import Path

from promptsvc.adapters.clients import client as aws_client
from promptsvc.local.functions import LambdaContext, load_handler_module
from promptsvc.local.template import LocalStack

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


def test_consumer_handler_reports_a_bad_record_as_a_batch_item_failure(
    local_stack: LocalStack, keys: dict[str, str]
) -> None:
    consumer = load_handler_module(ROOT, "consumer")
    payload = event("consumer-sqs-batch.json")
    good = payload["Records"][0]
    bad = {**good, "messageId": "not-ours", "body": '{"hello": 1}'}
    payload["Records"].append(bad)

    response = consumer.lambda_handler(payload, LambdaContext(function_name="ConsumerFunction"))

    # The example prompt does not exist: nothing to run, the record succeeds; the malformed one fails.
    assert response == {"batchItemFailures": [{"itemIdentifier": "not-ours"}]}


def test_every_function_has_an_event_payload(local_stack: LocalStack) -> None:
    handlers = {
        Path(local_stack.template["Resources"][f]["Properties"]["CodeUri"]).name
        for f in local_stack.functions()
    }
    payloads = {p.name.split("-")[0] for p in EVENTS.glob("*.json")}

    assert handlers <= payloads
    assert aws_client("sqs").list_queues()["QueueUrls"]
