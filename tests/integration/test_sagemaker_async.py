"""The sagemaker-async engine on moto, against the local async endpoint over its real wire protocol
(dev/promptsvc_dev/async_endpoint.py: InvokeEndpointAsync over HTTP, the request read from S3, the
answer written to S3, the notification published to the template's SNS topics): a run is
submitted and holds no consumer, the notification settles it (consumer/async_runs.py) with the
same writes and thread events as any run, retries and fallbacks keep their meaning, and a
duplicate, late or lost notification changes nothing it should not."""

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient
from promptsvc import wiring
from promptsvc.adapters.clients import client
from promptsvc.adapters.prompt_queue import SqsPromptQueue
from promptsvc.consumer import endings
from promptsvc.consumer.async_runs import settle_notification
from promptsvc.consumer.runner import Outcome, PromptRunner, RunResult
from promptsvc.domain.catalog import Catalog
from promptsvc.domain.names import scoped
from promptsvc.domain.thread_events import CLOSE_GRACE_SECONDS, ThreadEvent
from promptsvc.engines.registry import EngineRegistry
from promptsvc.engines.sagemaker_async import SageMakerAsyncEngine
from promptsvc.services.prompt_intake import PromptIntake
from promptsvc.settings import Settings
from promptsvc_dev.async_endpoint import AsyncEndpoint, ContainerError, LostNotification
from promptsvc_dev.sns_source import subscribe_queue
from promptsvc_dev.template import LocalStack

from tests.conftest import auth
from tests.integration.helpers import stored_prompts
from tests.integration.test_large_answers import LARGE_PROMPT

LEASE = 90.0
TTL = 600


@dataclass
class Async:
    """The API, a runner whose models are served by the local async endpoint, and the queue the
    endpoint's topics deliver to (what SNS invokes the settle function with)."""

    client: TestClient
    settings: Settings
    stack: LocalStack
    endpoint: AsyncEndpoint
    notifications: str  # the queue subscribed to both topics
    now: list[float] = field(default_factory=lambda: [time.time()])
    runner: PromptRunner | None = None
    engine: SageMakerAsyncEngine | None = None
    owners: dict[str, str] = field(default_factory=dict)
    settled: list[RunResult] = field(default_factory=list)

    def use(self, routing: dict[str, Any] | None = None) -> None:
        def model(name: str, routing: dict[str, Any] | None = None) -> dict[str, Any]:
            return {
                "id": name,
                "engine": "sagemaker-async",
                "api": "chat",
                "target": {"endpointName": f"promptsvc-{name}-async"},
                "timeouts": {"callSeconds": 300},
                "routing": routing or {},
            }

        catalog = Catalog.from_dict(
            {"defaultModelId": "alpha", "models": [model("alpha", routing), model("beta")]}
        )
        registry = wiring.registry_service(self.settings)
        self.client.app.state.intake = PromptIntake(lambda: catalog, registry)
        url = self.endpoint.url
        self.engine = SageMakerAsyncEngine(
            self.stack.refs["AsyncInferenceBucket"],
            request_ttl_seconds=TTL,
            client=lambda: boto3.client(
                "sagemaker-runtime",
                endpoint_url=url,
                region_name="us-east-1",
                aws_access_key_id="x",
                aws_secret_access_key="x",
            ),
        )
        self.runner = PromptRunner(
            wiring.prompt_store(self.settings, completes=True),
            lambda: catalog,
            EngineRegistry(
                self.settings.engines.model_copy(update={"engine": ""}), {"sagemaker-async": self.engine}
            ),
            lease_seconds=LEASE,
            cancel_poll=0.05,
            events=wiring.thread_event_log(self.settings),
            usage=wiring.usage_table(self.settings),
            answers=wiring.answer_bodies(self.settings),  # as the settle function's (wiring.async_runs)
            clock=lambda: self.now[0],
        )

    def add(self, key: str, purge: bool = True, **body: Any) -> dict[str, Any]:
        response = self.client.post(
            "/prompt-svc/prompt", json={"modelId": "alpha", **body}, headers=auth(key)
        )
        assert response.status_code == 200, response.text
        prompt = response.json()["prompt"]
        self.owners[prompt["id"]] = prompt["userId"]
        # The add's message is delivered by `run` (no event source here): off the queue, so what
        # the queue holds later is what the settling queued. (SQS takes one purge a minute.)
        if purge:
            client("sqs").purge_queue(QueueUrl=self.settings.prompts_queue_url)
        return dict(prompt)

    def run(self, prompt_id: str) -> RunResult:
        """A consumer's delivery of the prompt's message."""
        assert self.runner is not None
        return asyncio.run(self.runner.run(prompt_id, user_id=self.owners[prompt_id]))

    def messages(self) -> list[str]:
        """The SageMaker notifications published so far (each once), waiting for the endpoint."""
        for invocation in self.endpoint.invocations:
            assert invocation.notified.wait(10), "the endpoint never finished"
        found = []
        while True:
            got = (
                client("sqs")
                .receive_message(QueueUrl=self.notifications, MaxNumberOfMessages=10, WaitTimeSeconds=0)
                .get("Messages", [])
            )
            if not got:
                return found
            for message in got:
                found.append(json.loads(message["Body"])["Message"])  # the SNS envelope's message
                client("sqs").delete_message(
                    QueueUrl=self.notifications, ReceiptHandle=message["ReceiptHandle"]
                )

    def settle(self, message: str) -> RunResult:
        """What the settle function does with one notification."""
        assert self.runner is not None and self.engine is not None
        queue = SqsPromptQueue(self.settings.prompts_queue_url)
        result = asyncio.run(
            settle_notification(self.runner.settle_async, self.engine, queue.send_later, message)
        )
        self.settled.append(result)
        return result

    def deliver(self) -> list[RunResult]:
        return [self.settle(message) for message in self.messages()]

    def get(self, key: str, prompt_id: str) -> dict[str, Any]:
        return dict(self.client.get(f"/prompt-svc/prompt/{prompt_id}", headers=auth(key)).json())

    def events(self, prompt: dict[str, Any]) -> list[tuple[str, str]]:
        log = wiring.thread_event_log(self.settings)
        assert log is not None
        stored = log.after(scoped(prompt["userId"], prompt["threadId"]), 0, 100)
        return [(str(e.type), e.status or e.text or "") for e in stored if e.promptId == prompt["id"]]

    def queued(self) -> dict[str, int]:
        attributes = client("sqs").get_queue_attributes(
            QueueUrl=self.settings.prompts_queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed"],
        )["Attributes"]
        return {
            "visible": int(attributes["ApproximateNumberOfMessages"]),
            "delayed": int(attributes["ApproximateNumberOfMessagesDelayed"]),
        }


@pytest.fixture
def endpoint(local_stack: LocalStack) -> Iterator[AsyncEndpoint]:
    refs = local_stack.refs
    with AsyncEndpoint(
        refs["AsyncInferenceBucket"], refs["AsyncSuccessTopic"], refs["AsyncErrorTopic"]
    ) as served:
        yield served


@pytest.fixture
def setup(client: TestClient, settings: Settings, local_stack: LocalStack, endpoint: AsyncEndpoint) -> Async:
    topics = [local_stack.refs["AsyncSuccessTopic"], local_stack.refs["AsyncErrorTopic"]]
    ready = Async(client, settings, local_stack, endpoint, subscribe_queue(topics, "settle-deliveries"))
    ready.use()
    return ready


def test_a_run_is_submitted_holds_no_consumer_and_its_notification_completes_it(
    setup: Async, keys: dict[str, str]
) -> None:
    prompt = setup.add(keys["alice"], prompt="What's a banana?", threadId="fruit")

    submitted = setup.run(prompt["id"])
    running = setup.get(keys["alice"], prompt["id"])["prompt"]
    (invocation,) = setup.endpoint.invocations
    bucket, key = invocation.input_location.removeprefix("s3://").split("/", 1)
    request = json.loads(client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    (result,) = setup.deliver()

    # Submitted: the message is kept (hidden) as long as the endpoint may take, and the lease with it.
    assert submitted.outcome is Outcome.SUBMITTED and submitted.keep_message
    assert submitted.retry_after == TTL + 300 + 60
    assert running["status"] == "running"
    assert invocation.endpoint == "promptsvc-alpha-async"
    assert key == f"async/inputs/alice/{prompt['id']}/1.json"
    assert invocation.headers["x-amzn-sagemaker-invocationtimeoutseconds"] == "300"
    assert invocation.headers["x-amzn-sagemaker-requestttlseconds"] == str(TTL)
    assert request["stream"] is False and request["messages"][-1]["content"] == "What's a banana?"
    assert result.outcome is Outcome.COMPLETED
    body = setup.get(keys["alice"], prompt["id"])
    assert body["prompt"]["status"] == "completed" and body["answer"] == "What's a banana?"
    assert body["prompt"]["answeredBy"] == "alpha" and body["prompt"]["runCount"] == 1
    assert body["prompt"]["completionTokens"] == 3  # what the container reported
    assert body["prompt"]["usageEstimated"] is False
    assert setup.events(prompt) == [
        ("status", "scheduled"),
        ("status", "running"),
        ("delta", "What's a banana?"),
        ("status", "completed"),
    ]


def test_the_submitted_runs_lease_covers_the_endpoints_deadline(setup: Async, keys: dict[str, str]) -> None:
    prompt = setup.add(keys["alice"], prompt="Hold")
    setup.run(prompt["id"])
    stored = wiring.prompt_store(setup.settings).get("alice", prompt["id"])

    assert stored is not None
    assert stored.leaseUntil >= int((setup.now[0] + TTL + 300) * 1000)
    # A duplicate delivery meanwhile finds the run under its lease: kept, not run again.
    again = setup.run(prompt["id"])
    assert again.outcome is Outcome.BUSY and len(setup.endpoint.invocations) == 1


def test_a_container_error_is_retried_after_a_backoff_with_a_new_message(
    setup: Async, keys: dict[str, str]
) -> None:
    prompt = setup.add(keys["alice"], prompt="Again", threadId="retry")
    setup.endpoint.script(ContainerError(503))

    setup.run(prompt["id"])
    (failed,) = setup.deliver()
    errored = setup.get(keys["alice"], prompt["id"])["prompt"]
    queued = setup.queued()
    second = setup.run(prompt["id"])  # the retry's message, once its delay is over
    (done,) = setup.deliver()

    assert failed.outcome is Outcome.RETRY and failed.retry_after >= 1
    assert errored["status"] == "errored" and "503" in errored["error"]
    assert queued == {"visible": 0, "delayed": 1}  # a message for the retry, after its backoff
    assert second.outcome is Outcome.SUBMITTED
    assert done.outcome is Outcome.COMPLETED
    body = setup.get(keys["alice"], prompt["id"])
    assert body["prompt"]["runCount"] == 2 and body["answer"] == "Again"
    assert [kind for kind in setup.events(prompt) if kind[0] != "delta"] == [
        ("status", "scheduled"),
        ("status", "running"),
        ("status", "errored"),
        ("reset", ""),
        ("status", "running"),
        ("status", "completed"),
    ]


def test_a_failing_model_falls_back_to_the_next_one_at_once(setup: Async, keys: dict[str, str]) -> None:
    setup.use({"retry": {"count": 0}, "fallbacks": [{"model": "beta"}]})
    prompt = setup.add(keys["alice"], prompt="Route me")
    setup.endpoint.script(ContainerError(500))

    setup.run(prompt["id"])
    (failed,) = setup.deliver()
    queued = setup.queued()
    setup.run(prompt["id"])
    (done,) = setup.deliver()

    assert failed.outcome is Outcome.RETRY and failed.retry_after == 0
    assert queued == {"visible": 1, "delayed": 0}  # the fallback's message, due at once
    assert [i.endpoint for i in setup.endpoint.invocations] == [
        "promptsvc-alpha-async",
        "promptsvc-beta-async",
    ]
    assert done.outcome is Outcome.COMPLETED
    body = setup.get(keys["alice"], prompt["id"])["prompt"]
    assert body["answeredBy"] == "beta" and body["modelId"] == "alpha" and body["runCount"] == 2


def test_a_client_error_of_the_container_abandons_the_prompt(setup: Async, keys: dict[str, str]) -> None:
    prompt = setup.add(keys["alice"], prompt="Bad")
    setup.endpoint.script(ContainerError(400, '{"error": "bad request"}'))

    setup.run(prompt["id"])
    (failed,) = setup.deliver()

    assert failed.outcome is Outcome.ABANDONED
    body = setup.get(keys["alice"], prompt["id"])["prompt"]
    assert body["status"] == "abandoned" and "400" in body["error"]
    assert setup.queued() == {"visible": 0, "delayed": 0}  # nothing queued again


def test_a_duplicate_notification_does_nothing(setup: Async, keys: dict[str, str]) -> None:
    prompt = setup.add(keys["alice"], prompt="Once", threadId="dup")
    setup.run(prompt["id"])
    (message,) = setup.messages()

    first, second = setup.settle(message), setup.settle(message)

    assert (first.outcome, second.outcome) == (Outcome.COMPLETED, Outcome.SKIPPED)
    assert [e for e in setup.events(prompt) if e[0] == "status"][-1] == ("status", "completed")
    assert len([e for e in setup.events(prompt) if e[0] == "delta"]) == 1


def test_a_notification_for_a_prompt_canceled_meanwhile_does_nothing(
    setup: Async, keys: dict[str, str]
) -> None:
    prompt = setup.add(keys["alice"], prompt="Never mind", threadId="cancel")
    setup.run(prompt["id"])
    canceled = setup.client.post(f"/prompt-svc/prompt/{prompt['id']}/cancel", headers=auth(keys["alice"]))

    (result,) = setup.deliver()

    assert canceled.status_code == 200, canceled.text
    assert result.outcome is Outcome.SKIPPED
    body = setup.get(keys["alice"], prompt["id"])
    assert body["prompt"]["status"] == "canceled" and not body.get("answer")
    assert not [e for e in setup.events(prompt) if e[0] == "delta"]


def test_a_lost_notification_brings_the_prompt_back_when_its_lease_ends(
    setup: Async, keys: dict[str, str]
) -> None:
    prompt = setup.add(keys["alice"], prompt="Lost")
    setup.endpoint.script(LostNotification())

    first = setup.run(prompt["id"])
    assert setup.messages() == []  # nothing ever comes
    # The kept message comes back when the hold is over: the run is claimed again, its loss
    # counted like a consumer crash, and submitted anew.
    setup.now[0] += first.retry_after + 1
    second = setup.run(prompt["id"])
    (done,) = setup.deliver()

    assert (first.outcome, second.outcome, done.outcome) == (
        Outcome.SUBMITTED,
        Outcome.SUBMITTED,
        Outcome.COMPLETED,
    )
    stored = wiring.prompt_store(setup.settings).get("alice", prompt["id"])
    assert stored is not None
    assert (stored.status, stored.runCount, stored.crashCount) == ("completed", 2, 1)


def test_a_late_notification_of_an_earlier_run_does_nothing(setup: Async, keys: dict[str, str]) -> None:
    prompt = setup.add(keys["alice"], prompt="Late")
    setup.endpoint.script(LostNotification())
    first = setup.run(prompt["id"])
    setup.now[0] += first.retry_after + 1
    setup.run(prompt["id"])  # run 2 under way
    invocation = setup.endpoint.invocations[0]
    assert invocation.notified.wait(10)
    from promptsvc_dev.async_endpoint import notification

    late = json.dumps(notification(invocation, invocation.inference_id, completed=True))

    assert setup.settle(late).outcome is Outcome.SKIPPED
    assert setup.get(keys["alice"], prompt["id"])["prompt"]["status"] == "running"


def test_an_answer_too_large_for_an_item_is_kept_whole_in_the_answers_bucket(
    setup: Async, keys: dict[str, str], local_stack: LocalStack
) -> None:
    """The settle stores an async answer the way a streamed run stores it: past what an item holds,
    the body goes to the answers bucket, and the thread's deltas carry it in events an item holds."""
    prompt = setup.add(keys["alice"], prompt=LARGE_PROMPT, threadId="big")

    setup.run(prompt["id"])
    (result,) = setup.deliver()

    assert result.outcome is Outcome.COMPLETED
    body = setup.get(keys["alice"], prompt["id"])
    assert body["prompt"]["status"] == "completed" and body["answer"] == LARGE_PROMPT
    (item,) = [i for i in stored_prompts(local_stack) if i["id"]["S"] == prompt["id"]]
    assert item["answer"]["S"] == "" and item["answerRef"]["S"] == f"alice/{prompt['id']}/1"
    deltas = [text for kind, text in thread_of(setup, prompt) if kind == "delta"]
    assert "".join(deltas) == LARGE_PROMPT
    assert max(len(d.encode()) for d in deltas) <= 64 * 1024
    assert thread_of(setup, prompt)[-1] == ("status", "completed")


def test_a_hundred_notifications_settled_at_once_on_one_thread_lose_no_event(
    setup: Async, keys: dict[str, str]
) -> None:
    """A hundred async runs of one thread, all notified at once and settled concurrently: every
    prompt completes once, and the thread holds each one's events, in order, with no seq missing."""
    prompts = [
        setup.add(keys["alice"], purge=False, prompt=f"Question {n}", threadId="busy") for n in range(100)
    ]
    for prompt in prompts:
        assert setup.run(prompt["id"]).outcome is Outcome.SUBMITTED
    messages = setup.messages()
    assert len(messages) == 100
    assert setup.runner is not None and setup.engine is not None
    runner, engine = setup.runner, setup.engine
    queue = SqsPromptQueue(setup.settings.prompts_queue_url)

    async def all_at_once() -> list[RunResult]:
        return list(
            await asyncio.gather(
                *(settle_notification(runner.settle_async, engine, queue.send_later, m) for m in messages)
            )
        )

    results = asyncio.run(all_at_once())

    assert [r.outcome for r in results] == [Outcome.COMPLETED] * 100
    # On a starved CPU a settle's closing event may come too late after its finish: fenced, its
    # repair's message is queued for after the grace (the test below checks it); run those repairs.
    closed = {e.promptId for e in whole_thread(setup, "alice", "busy") if e.status == "completed"}
    unclosed = [p for p in prompts if p["id"] not in closed]
    setup.now[0] += CLOSE_GRACE_SECONDS + 60
    assert [setup.run(p["id"]).outcome for p in unclosed] == [Outcome.SKIPPED] * len(unclosed)
    stored = whole_thread(setup, "alice", "busy")
    assert [e.seq for e in stored] == list(range(1, len(stored) + 1))
    for n, prompt in enumerate(prompts):
        mine = [(str(e.type), e.status or e.text or "") for e in stored if e.promptId == prompt["id"]]
        assert mine == [
            ("status", "scheduled"),
            ("status", "running"),
            ("delta", f"Question {n}"),
            ("status", "completed"),
        ]
        assert setup.get(keys["alice"], prompt["id"])["prompt"]["status"] == "completed"


def whole_thread(setup: Async, user_id: str, thread_id: str) -> list[ThreadEvent]:
    """Every event of the user's thread, every page."""
    log = wiring.thread_event_log(setup.settings)
    assert log is not None
    thread = scoped(user_id, thread_id)
    stored: list[ThreadEvent] = []
    while page := log.after(thread, stored[-1].seq if stored else 0, 100):
        stored.extend(page)
    return stored


def thread_of(setup: Async, prompt: dict[str, Any]) -> list[tuple[str, str]]:
    """The prompt's events, every page of its thread."""
    stored = whole_thread(setup, prompt["userId"], prompt["threadId"])
    return [(str(e.type), e.status or e.text or "") for e in stored if e.promptId == prompt["id"]]


def test_a_settled_runs_closing_event_missed_by_its_fence_is_repaired_after_the_grace(
    setup: Async, keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A settle whose closing event comes too late after the finish (a starved CPU: 100 settles at
    once) has it fenced, as a streamed run would; it queues a message that brings the repair after
    the grace, instead of leaving the thread without `completed` until the run's held message comes
    back, at the endpoint's deadline."""
    prompt = setup.add(keys["alice"], prompt="What's a kiwi?", threadId="late")
    assert setup.run(prompt["id"]).outcome is Outcome.SUBMITTED
    monkeypatch.setattr(endings, "CLOSING_WRITE_SECONDS", -60.0)  # every closing write comes too late

    (settled,) = setup.deliver()

    assert settled.outcome is Outcome.COMPLETED
    assert setup.get(keys["alice"], prompt["id"])["prompt"]["status"] == "completed"
    assert ("status", "completed") not in setup.events(prompt)  # fenced
    assert setup.queued() == {"visible": 0, "delayed": 1}  # the repair's message, after the grace
    setup.now[0] += CLOSE_GRACE_SECONDS + 60  # the message's delay over

    assert setup.run(prompt["id"]).outcome is Outcome.SKIPPED  # the repair
    assert setup.events(prompt)[-1] == ("status", "completed")
