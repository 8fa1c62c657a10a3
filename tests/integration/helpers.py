"""Reading the moto state behind the API (what is stored and what is queued), and engines for tests."""

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi.testclient import TestClient
from promptsvc.adapters.clients import client
from promptsvc.engines.base import EngineEvent, EngineRequest
from promptsvc_dev.template import LocalStack

from tests.conftest import auth


def add(test_client: TestClient, key: str, **body: object) -> dict[str, Any]:
    """Add a prompt as the key's user; the stored prompt."""
    response = test_client.post("/prompt-svc/prompt", json={"prompt": "hi", **body}, headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()["prompt"]


def stored_prompts(stack: LocalStack) -> list[dict[str, Any]]:
    return client("dynamodb").scan(TableName=stack.refs["PromptsTable"])["Items"]


def queued_bodies(stack: LocalStack) -> list[dict[str, Any]]:
    """Every message on the prompts queue (received with a zero visibility timeout, so left there)."""
    sqs = client("sqs")
    url = stack.refs["PromptsQueue"]
    bodies: dict[str, dict[str, Any]] = {}
    for _ in range(5):
        messages = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0, WaitTimeSeconds=0
        ).get("Messages", [])
        for message in messages:
            bodies[message["MessageId"]] = json.loads(message["Body"])
    return list(bodies.values())


def queue_depth(stack: LocalStack) -> int:
    attributes = client("sqs").get_queue_attributes(
        QueueUrl=stack.refs["PromptsQueue"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


class EngineOf:
    """An engine whose every call streams `play(request)`: a test's behaviour, given to a runner
    by name (EngineRegistry's `engines`, wiring.use_engines)."""

    def __init__(self, play: Callable[[EngineRequest], AsyncIterator[EngineEvent]]) -> None:
        self._play = play

    def stream(self, request: EngineRequest) -> AsyncIterator[EngineEvent]:
        return self._play(request)
