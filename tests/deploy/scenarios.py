"""One scenario per function of template.yaml: invoke it with its events/ payloads on a Stack
(tests/deploy/conftest.py) and check that it did its job, in its responses and in the resources."""

import json
import time
from collections.abc import Callable
from typing import Any

from promptsvc.adapters.clients import client
from promptsvc.adapters.prompt_queue import message_body
from promptsvc.adapters.prompt_table import DynamoPromptStore
from promptsvc.domain.clock import now_rfc3339
from promptsvc.domain.keys import Role

from tests.deploy.conftest import SMOKE_USER, Stack, event

PLACEHOLDER_ID = "prm_events_example"


def _authorized(name: str, key: str) -> dict[str, Any]:
    payload = event(name)
    payload["headers"]["authorization"] = f"Bearer {key}"
    return payload


def _json(response: dict[str, Any]) -> Any:
    assert response["headers"]["content-type"] == "application/json", response
    return json.loads(response["body"])


def _prompt_item(stack: Stack, prompt_id: str) -> dict[str, Any]:
    """The stored item of the prompt with this id (found by scanning: the table's key is not this
    check's business, and the smoke stack holds a handful of prompts)."""
    items = client("dynamodb").scan(TableName=stack.local.refs["PromptsTable"])["Items"]
    (item,) = [i for i in items if i["id"]["S"] == prompt_id]
    return item


def add_prompt(stack: Stack) -> str:
    """POST /prompt-svc/prompt (events/api-add-prompt.json) through the API function; the new id."""
    key = stack.create_key()
    outcome = stack.invoke("ApiFunction", {"payload": _authorized("api-add-prompt.json", key)}).check()
    (response,) = outcome.responses
    assert response["statusCode"] == 200, response
    return str(_json(response)["prompt"]["id"])


def api(stack: Stack) -> None:
    key = stack.create_key()
    # A run of a stored prompt: the queue API reads its version from the registry's table.
    created = stack.invoke("RegistryFunction", {"payload": _authorized("registry-create.json", key)})
    stored_prompt = _json(created.check().responses[0])["_id"]
    run_stored = _authorized("api-add-prompt.json", key)
    run_stored["body"] = json.dumps({"promptConfigId": stored_prompt, "variables": {"fruit": "banana"}})
    outcome = stack.invoke(
        "ApiFunction",
        {"payload": _authorized("api-add-prompt.json", key)},
        # GET the prompt just added: its id replaces the placeholder of the example event.
        {
            "payload": _authorized("api-get-prompt.json", key),
            "substitute": {PLACEHOLDER_ID: ["prompt", "id"]},
        },
        {"payload": _authorized("api-add-prompt.json", key)},
        {"payload": _authorized("api-list-prompts.json", key)},  # thread-1, 1 a page, with the count
        {"payload": _authorized("api-list-models.json", key)},
        {"payload": event("api-add-prompt.json")},  # the example key does not exist: 401
        {"payload": run_stored},
    ).check()
    added, got, _, listed, models, refused, stored = outcome.responses

    assert added["statusCode"] == 200, added
    prompt = _json(added)["prompt"]
    assert (prompt["prompt"], prompt["threadId"], prompt["userId"]) == (
        "What's a banana?",
        "thread-1",
        SMOKE_USER,
    )
    assert prompt["status"] == "scheduled"
    assert got["statusCode"] == 200, got
    assert _json(got)["prompt"]["id"] == prompt["id"]
    assert listed["statusCode"] == 200, listed
    page = _json(listed)
    assert (len(page["prompts"]), page["count"]) == (1, 2)
    assert page["after"]  # a signed cursor: the secret was read
    assert models["statusCode"] == 200, models
    catalog = _json(models)
    assert catalog["defaultModelId"] in {m["id"] for m in catalog["models"]}  # the layer ships the catalog
    assert refused["statusCode"] == 401, refused
    assert "error" in _json(refused)
    assert stored["statusCode"] == 200, stored
    assert _json(stored)["prompt"]["prompt"] == "What is a banana?"
    queued = client("sqs").receive_message(QueueUrl=stack.local.refs["PromptsQueue"], MaxNumberOfMessages=10)
    assert prompt["id"] in [json.loads(m["Body"])["promptId"] for m in queued["Messages"]]


def registry(stack: Stack) -> None:
    key = stack.create_key()
    outcome = stack.invoke(
        "RegistryFunction",
        {"payload": _authorized("registry-create.json", key)},  # POST /v2/prompts
        {"payload": _authorized("registry-list.json", key)},  # GET /v2/prompts
        {"payload": event("registry-list.json")},  # the example key does not exist: 401
    ).check()
    stored, listed, refused = outcome.responses

    assert stored["statusCode"] == 200, stored
    assert listed["statusCode"] == 200, listed
    assert [p["_id"] for p in _json(listed)["data"]] == [_json(stored)["_id"]]
    assert refused["statusCode"] == 401, refused
    assert "message" in _json(refused)  # the registry's error shape


def console(stack: Stack) -> None:
    admin = stack.create_key("smoke-admin-key", "root", Role.ADMIN)
    created = stack.invoke("ConsoleFunction", {"payload": _authorized("console-create-key.json", admin)})
    (made,) = created.check().responses
    assert made["statusCode"] == 201, made
    shown = _json(made)
    assert shown["userId"] == "bob"
    bob = shown["key"]  # shown once, at its creation

    outcome = stack.invoke(
        "ConsoleFunction",
        {"payload": _authorized("console-usage.json", bob)},  # his own usage: none yet
        {"payload": _authorized("console-create-key.json", bob)},  # a user makes no keys: 403
        {"payload": event("console-usage.json")},  # the example key does not exist: 401
        {"payload": event("console-playground.json")},  # the page, no key
    ).check()
    usage, forbidden, refused, page = outcome.responses
    assert usage["statusCode"] == 200, usage
    assert _json(usage)["userId"] == "bob"
    assert _json(usage)["usage"] == []
    assert forbidden["statusCode"] == 403, forbidden
    assert refused["statusCode"] == 401, refused
    assert "error" in _json(refused)
    assert page["statusCode"] == 200, page
    assert page["headers"]["content-type"].startswith("text/html")
    # The key the console made authenticates on the queue API, another function.
    queue = stack.invoke("ApiFunction", {"payload": _authorized("api-list-models.json", bob)})
    (models,) = queue.check().responses
    assert models["statusCode"] == 200, models


# A prompt whose item, with even the mock's 8 KB answer, passes DynamoDB's 400 KB: its answer goes
# to the answers bucket (the consumer's s3:PutObject) and a GET reads it back (the API's GetObject).
LARGE_BODY = {"prompt": "p" * 250_000, "template": "{prompt}" + "t" * 145_000, "threadId": "thread-1"}


def consumer(stack: Stack) -> None:
    prompt_id = add_prompt(stack)
    key = stack.create_key()
    large = _authorized("api-add-prompt.json", key)
    large["body"] = json.dumps(LARGE_BODY)
    added = stack.invoke("ApiFunction", {"payload": large}).check().responses[0]
    assert added["statusCode"] == 200, added
    large_id = str(_json(added)["prompt"]["id"])
    batch = event("consumer-sqs-batch.json")
    record = batch["Records"][0]
    record["body"] = message_body(prompt_id, SMOKE_USER)
    record["eventSourceARN"] = stack.local.attributes[("PromptsQueue", "Arn")]
    batch["Records"].append({**record, "messageId": "large", "body": message_body(large_id, SMOKE_USER)})

    outcome = stack.invoke("ConsumerFunction", {"payload": batch}).check()

    assert outcome.responses == [{"batchItemFailures": []}]
    item = _prompt_item(stack, prompt_id)
    assert item["status"]["S"] == "completed", item
    assert "banana" in item["answer"]["S"]  # the mock engine echoes the rendered prompt
    get = _authorized("api-get-prompt.json", key)
    get_outcome = stack.invoke(
        "ApiFunction", {"payload": json.loads(json.dumps(get).replace(PLACEHOLDER_ID, large_id))}
    )
    (got,) = get_outcome.check().responses
    assert got["statusCode"] == 200, got
    body = _json(got)
    assert body["prompt"]["status"] == "completed"
    assert body["answer"] == ("p" * 250_000)[:8192]  # the mock's answer: the rendered prompt, cut


def deadletter(stack: Stack) -> None:
    prompt_id = add_prompt(stack)
    dlq = stack.local.refs["PromptsDeadLetterQueue"]
    client("sqs").send_message(QueueUrl=dlq, MessageBody=message_body(prompt_id, SMOKE_USER))
    client("sqs").send_message(QueueUrl=dlq, MessageBody="not a prompt message")

    outcome = stack.invoke("DeadLetterFunction", {"payload": event("deadletter-schedule.json")}).check()

    assert outcome.responses == [{"read": 2, "abandoned": 1, "unreadable": 1, "requeued": 0}]
    item = _prompt_item(stack, prompt_id)
    assert item["status"]["S"] == "abandoned", item


def _connect_and_subscribe(stack: Stack, *more: dict[str, Any]) -> tuple[str, list[Any]]:
    key = stack.create_key()
    connect = event("ws-connect.json")
    connect["queryStringParameters"]["token"] = key
    connect["multiValueQueryStringParameters"]["token"] = [key]
    connection_id = connect["requestContext"]["connectionId"]
    outcome = stack.invoke(
        "WsFunction", {"payload": connect}, {"payload": event("ws-subscribe.json")}, *more
    ).check()
    return connection_id, outcome.responses


def ws(stack: Stack) -> None:
    connection_id, responses = _connect_and_subscribe(stack, {"payload": event("ws-disconnect.json")})

    assert responses == [{"statusCode": 200}] * 3
    assert stack.sink.to(connection_id) == [{"type": "subscribed", "threadId": "thread-1", "after": 0}]
    connections = client("dynamodb").scan(TableName=stack.local.refs["ConnectionsTable"])["Items"]
    assert connections == []  # the disconnect forgot it


def stream(stack: Stack) -> None:
    connection_id, _ = _connect_and_subscribe(stack)

    outcome = stack.invoke("StreamFunction", {"payload": event("stream-dynamodb-batch.json")}).check()

    assert outcome.responses == [{"batchItemFailures": []}]
    frames = stack.sink.to(connection_id)
    assert frames[0]["type"] == "subscribed"
    assert [(f["seq"], f["type"]) for f in frames[1:]] == [
        (1, "status"),
        (2, "delta"),
    ]  # the REMOVE is ignored


# An async endpoint's answer (what the container wrote to the output location) for the prompt the
# success notification of events/settle-sns-success.json names, once that prompt runs there.
ASYNC_ANSWER = {"choices": [{"message": {"content": "A yellow fruit."}, "finish_reason": "stop"}]}


def settle(stack: Stack) -> None:
    prompt_id = add_prompt(stack)
    store = DynamoPromptStore(stack.local.refs["PromptsTable"])  # the consumer's claim, as it submits
    lease_until = int((time.time() + 600) * 1000)
    assert store.claim_waiting(prompt_id, SMOKE_USER, now_rfc3339(), lease_until).claimed is not None
    payload = json.loads(json.dumps(event("settle-sns-success.json")).replace(PLACEHOLDER_ID, prompt_id))
    note = json.loads(payload["Records"][0]["Sns"]["Message"])
    bucket, key = note["responseParameters"]["outputLocation"].removeprefix("s3://").split("/", 1)
    assert bucket == stack.local.refs["AsyncInferenceBucket"]
    client("s3").put_object(Bucket=bucket, Key=key, Body=json.dumps(ASYNC_ANSWER).encode())

    outcome = stack.invoke("SettleFunction", {"payload": payload}).check()

    assert outcome.responses == [{"outcomes": ["completed"]}]
    item = _prompt_item(stack, prompt_id)
    assert item["status"]["S"] == "completed", item
    assert item["answer"]["S"] == "A yellow fruit."


SCENARIOS: dict[str, Callable[[Stack], None]] = {
    "ApiFunction": api,
    "ConsoleFunction": console,
    "RegistryFunction": registry,
    "ConsumerFunction": consumer,
    "DeadLetterFunction": deadletter,
    "WsFunction": ws,
    "StreamFunction": stream,
    "SettleFunction": settle,
}
