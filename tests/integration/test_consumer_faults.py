"""Every lifecycle rule of the consumer, each fault injected on purpose, on moto."""

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from promptsvc import wiring
from promptsvc.adapters.clients import client as aws_client
from promptsvc.adapters.prompt_queue import SqsMessages, message_body
from promptsvc.consumer.runner import Outcome, PromptRunner
from promptsvc.consumer.settle import ReceivedMessage, Settlement, settle
from promptsvc.domain.catalog import Catalog
from promptsvc.domain.clock import now_rfc3339
from promptsvc.domain.prompt import Prompt
from promptsvc.engines.base import Delta, Engine, EngineError, EngineEvent, EngineRequest, Finish
from promptsvc.engines.registry import EngineRegistry
from promptsvc.settings import Settings
from promptsvc_dev.template import LocalStack

from tests.conftest import auth
from tests.integration.helpers import EngineOf, add

MODEL = "huggingface/TheBloke/mistral-7b-instruct-v0.2.Q3_K_S.gguf"


def catalog(call_timeout: float = 120, stall_timeout: float = 30) -> Catalog:
    shipped = json.loads(
        (Path(__file__).resolve().parents[2] / "layers/promptsvc/promptsvc/data/models.json").read_text()
    )
    for model in shipped["models"]:
        model["timeouts"] = {"callSeconds": call_timeout, "stallSeconds": stall_timeout}
    return Catalog.from_dict(shipped)


def runner(
    settings: Settings,
    clock: Callable[[], float] | None = None,
    engine: Engine | None = None,
    **timeouts: float,
) -> PromptRunner:
    """A runner on moto; `engine` answers for the mock engine (a Scripted one, say)."""
    kwargs = {"clock": clock} if clock else {}
    return PromptRunner(
        wiring.prompt_store(settings),
        lambda: catalog(**timeouts),
        EngineRegistry(settings.engines, {"mock": engine} if engine else None),
        cancel_poll=0.05,
        **kwargs,  # type: ignore[arg-type]
    )


class Scripted:
    """An engine whose calls play the given behaviours in turn."""

    def __init__(self, behaviours: list[Callable[[], AsyncIterator[EngineEvent]]]) -> None:
        self._calls = iter(behaviours)

    def stream(self, request: EngineRequest) -> AsyncIterator[EngineEvent]:
        return next(self._calls)()


def fails(error: EngineError) -> Callable[[], AsyncIterator[EngineEvent]]:
    async def play() -> AsyncIterator[EngineEvent]:
        raise error
        yield  # pragma: no cover

    return play


def answers(text: str) -> Callable[[], AsyncIterator[EngineEvent]]:
    async def play() -> AsyncIterator[EngineEvent]:
        yield Delta(text)
        yield Finish("stop", completion_tokens=1)

    return play


def prompt_of(client: TestClient, key: str, prompt_id: str) -> dict:
    return client.get(f"/prompt-svc/prompt/{prompt_id}", headers=auth(key)).json()


def receive(stack: LocalStack) -> ReceivedMessage:
    raw = aws_client("sqs").receive_message(
        QueueUrl=stack.refs["PromptsQueue"], AttributeNames=["ApproximateReceiveCount"], WaitTimeSeconds=0
    )["Messages"][0]
    return ReceivedMessage(
        raw["MessageId"], raw["ReceiptHandle"], raw["Body"], int(raw["Attributes"]["ApproximateReceiveCount"])
    )


def redeliver(stack: LocalStack, prompt_id: str) -> None:
    """What SQS does once a kept message's visibility runs out: deliver it again."""
    sqs = aws_client("sqs")
    sqs.purge_queue(QueueUrl=stack.refs["PromptsQueue"])
    sqs.send_message(QueueUrl=stack.refs["PromptsQueue"], MessageBody=message_body(prompt_id, "alice"))


class Recorder(SqsMessages):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.prompts_queue_url, settings.prompts_dlq_url)
        self.visibility: list[int] = []

    def change_visibility(self, receipt_handle: str, seconds: int) -> None:
        self.visibility.append(seconds)
        super().change_visibility(receipt_handle, seconds)


def test_a_retryable_failure_errors_then_the_retry_completes(
    client: TestClient, keys: dict[str, str], settings: Settings, local_stack: LocalStack,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    prompt = add(client, keys["alice"])
    messages = Recorder(settings)
    run = runner(
        settings,
        engine=Scripted([fails(EngineError("503 Service Unavailable", retryable=True)), answers("fine")]),
    )

    first = asyncio.run(settle(run, messages, receive(local_stack)))
    errored = prompt_of(client, keys["alice"], prompt["id"])["prompt"]
    redeliver(local_stack, prompt["id"])  # stand-in for the backoff passing
    second = asyncio.run(settle(run, messages, receive(local_stack)))

    assert first is Settlement.KEPT
    assert 1 <= messages.visibility[0] <= 2  # first retry: 2 s backoff with jitter
    assert errored["status"] == "errored" and errored["error"] == "503 Service Unavailable"
    assert second is Settlement.DONE
    done = prompt_of(client, keys["alice"], prompt["id"])
    assert done["prompt"]["status"] == "completed" and done["prompt"]["runCount"] == 2
    assert done["prompt"]["error"] == "" and done["answer"] == "fine"


def test_after_max_retries_the_prompt_is_abandoned(
    client: TestClient, keys: dict[str, str], settings: Settings, local_stack: LocalStack,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    prompt = add(client, keys["alice"], maxRetries=2)
    run = runner(settings, engine=Scripted([fails(EngineError("429 Too Many Requests", retryable=True))] * 3))

    results = [asyncio.run(run.run(prompt["id"], user_id="alice")) for _ in range(3)]

    assert [r.outcome for r in results] == [Outcome.RETRY, Outcome.RETRY, Outcome.ABANDONED]
    assert results[0].retry_after <= results[1].retry_after * 2  # backoff grows (2 s, then 4 s, jittered)
    body = prompt_of(client, keys["alice"], prompt["id"])["prompt"]
    assert body["status"] == "abandoned" and body["runCount"] == 3 and "429" in body["error"]


def test_an_unknown_model_is_abandoned_at_once(
    client: TestClient, keys: dict[str, str], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompt = add(client, keys["alice"], modelId="Qwen/Qwen2.5-7B-Instruct")
    shipped = catalog()
    without = Catalog({k: v for k, v in shipped.models.items() if k != "Qwen/Qwen2.5-7B-Instruct"}, MODEL)
    run = PromptRunner(wiring.prompt_store(settings), lambda: without, EngineRegistry(settings.engines))

    result = asyncio.run(run.run(prompt["id"], user_id="alice"))

    body = prompt_of(client, keys["alice"], prompt["id"])["prompt"]
    assert result.outcome is Outcome.ABANDONED
    assert body["status"] == "abandoned" and "unknown modelId" in body["error"]


class Clock:
    def __init__(self) -> None:
        import time

        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_a_consumer_that_dies_after_its_claim_is_replaced_and_the_run_counts(
    client: TestClient, keys: dict[str, str], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompt = add(client, keys["alice"])
    repository = wiring.prompt_store(settings)
    clock = Clock()
    stored = repository.get("alice", prompt["id"])
    assert stored is not None
    repository.claim(stored, now_rfc3339(), int((clock.now + 60) * 1000))  # ...and then it died
    run = runner(settings, clock=clock, engine=Scripted([answers("recovered")]))

    while_leased = asyncio.run(
        run.run(prompt["id"], user_id="alice")
    )  # the message came back early: lease still live
    clock.now += 61
    after_lease = asyncio.run(run.run(prompt["id"], user_id="alice"))

    assert while_leased.outcome is Outcome.BUSY and 1 <= while_leased.retry_after <= 60
    assert after_lease.outcome is Outcome.COMPLETED
    body = prompt_of(client, keys["alice"], prompt["id"])
    assert body["prompt"]["runCount"] == 2 and body["answer"] == "recovered"
    assert repository.get("alice", prompt["id"]).crashCount == 1  # type: ignore[union-attr]


def test_a_prompt_that_keeps_killing_consumers_is_dead_lettered_and_abandoned(
    client: TestClient, keys: dict[str, str], settings: Settings, local_stack: LocalStack
) -> None:
    prompt = add(client, keys["alice"])
    repository = wiring.prompt_store(settings)
    clock = Clock()
    for _ in range(settings.crash_limit):  # each consumer claims it, then dies
        current = repository.get("alice", prompt["id"])
        assert current is not None
        repository.claim(current, now_rfc3339(), int(clock.now * 1000) - 1)
    message = receive(local_stack)

    settled = asyncio.run(settle(runner(settings, clock=clock), Recorder(settings), message))

    assert settled is Settlement.DONE
    body = prompt_of(client, keys["alice"], prompt["id"])["prompt"]
    assert body["status"] == "abandoned"
    assert f"stopped {settings.crash_limit} times" in body["error"]
    dead = aws_client("sqs").receive_message(
        QueueUrl=local_stack.refs["PromptsDeadLetterQueue"], MessageAttributeNames=["All"]
    )["Messages"]
    assert json.loads(dead[0]["Body"]) == {"promptId": prompt["id"], "userId": "alice"}
    assert "dead-letter" in dead[0]["MessageAttributes"]["reason"]["StringValue"]


def test_a_stalled_stream_is_a_retryable_timeout(
    client: TestClient, keys: dict[str, str], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompt = add(client, keys["alice"])

    async def stalls() -> AsyncIterator[EngineEvent]:
        yield Delta("a few ")
        await asyncio.sleep(3600)
        yield Delta("never")

    result = asyncio.run(
        runner(settings, engine=Scripted([stalls]), stall_timeout=0.3).run(prompt["id"], user_id="alice")
    )

    body = prompt_of(client, keys["alice"], prompt["id"])["prompt"]
    assert result.outcome is Outcome.RETRY
    assert body["status"] == "errored" and "stalled" in body["error"]


def test_the_call_timeout_bounds_a_stream_that_never_ends(
    client: TestClient, keys: dict[str, str], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompt = add(client, keys["alice"])

    async def endless() -> AsyncIterator[EngineEvent]:
        while True:
            await asyncio.sleep(0.05)
            yield Delta("more ")

    result = asyncio.run(
        runner(settings, engine=Scripted([endless]), call_timeout=0.5, stall_timeout=0.3).run(
            prompt["id"], user_id="alice"
        )
    )

    body = prompt_of(client, keys["alice"], prompt["id"])["prompt"]
    assert result.outcome is Outcome.RETRY
    assert body["status"] == "errored" and "exceeded 0.5 s" in body["error"]


def test_a_throttled_table_keeps_the_message_for_later(
    client: TestClient, keys: dict[str, str], settings: Settings, local_stack: LocalStack,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from botocore.exceptions import ClientError

    prompt = add(client, keys["alice"])
    repository = wiring.prompt_store(settings)

    def throttled(*args: object) -> None:
        raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "UpdateItem")

    monkeypatch.setattr(repository, "get", throttled)
    monkeypatch.setattr(repository, "claim_waiting", throttled)
    run = PromptRunner(repository, lambda: catalog(), EngineRegistry(settings.engines))
    messages = Recorder(settings)

    settled = asyncio.run(settle(run, messages, receive(local_stack)))

    assert settled is Settlement.KEPT and len(messages.visibility) == 1
    assert prompt_of(client, keys["alice"], prompt["id"])["prompt"]["status"] == "scheduled"


def test_a_claim_that_loses_a_race_keeps_its_message_while_the_prompt_is_unfinished(
    client: TestClient, keys: dict[str, str], settings: Settings, local_stack: LocalStack,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Two deliveries find a prompt whose consumer died and both reclaim it; the other wins. Ours
    must not be deleted as a mere duplicate while the prompt is unfinished: it is what brings the
    prompt back should the winner's consumer die too."""
    prompt = add(client, keys["alice"])
    repository = wiring.prompt_store(settings)
    stored = repository.get("alice", prompt["id"])
    assert stored is not None
    repository.claim(stored, now_rfc3339(), int(time.time() * 1000) - 1)  # ...and its consumer died
    real_claim = repository.claim

    def raced(seen: Prompt, now: str, lease_until_ms: int) -> Prompt | None:
        monkeypatch.setattr(repository, "claim", real_claim)
        assert real_claim(seen, now, lease_until_ms) is not None  # the other delivery wins
        return real_claim(seen, now, lease_until_ms)  # ours, on the prompt as it was read

    monkeypatch.setattr(repository, "claim", raced)
    run = PromptRunner(repository, lambda: catalog(), EngineRegistry(settings.engines))
    messages = Recorder(settings)

    settled = asyncio.run(settle(run, messages, receive(local_stack)))

    body = prompt_of(client, keys["alice"], prompt["id"])["prompt"]
    assert body["status"] == "running" and body["runCount"] == 2  # the other delivery's run
    assert settled is Settlement.KEPT and len(messages.visibility) == 1
    assert 1 <= messages.visibility[0] <= 90  # back when the winner's lease runs out


def test_a_run_emits_its_metrics_as_emf(
    client: TestClient, keys: dict[str, str], settings: Settings, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "promptsvc")
    prompt = add(client, keys["alice"])
    capsys.readouterr()

    asyncio.run(runner(settings, engine=Scripted([answers("metered")])).run(prompt["id"], user_id="alice"))

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    emitted = {m["Name"]: line for line in lines for m in line["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {
        "TimeInQueue",
        "TimeToFirstToken",
        "GenerationTime",
        "TokensPerSecond",
        "PromptsCompleted",
    } <= set(emitted)
    assert all(line["ModelId"] == MODEL for line in emitted.values())
    assert emitted["PromptsCompleted"]["PromptsCompleted"] == [1.0]


def test_a_callers_template_for_a_chat_model_is_sent_as_a_rendered_completion(
    client: TestClient, keys: dict[str, str], settings: Settings, local_stack: LocalStack
) -> None:
    """A chat API applies the server's own template; the caller's would be silently ignored. So a
    prompt with the caller's template goes as a completion, rendered with it; without one, chat."""
    sent: list[EngineRequest] = []

    def stream(request: EngineRequest) -> AsyncIterator[EngineEvent]:
        sent.append(request)
        return answers("ok")()

    chat_model = next(m for m in catalog().models.values() if m.api == "chat")
    own = add(client, keys["alice"], modelId=chat_model.id, template="<s>{prompt}</s>", prompt="hi")
    plain = add(client, keys["alice"], modelId=chat_model.id, prompt="hello")
    run = runner(settings, engine=EngineOf(stream))
    for _ in range(2):
        assert asyncio.run(settle(run, Recorder(settings), receive(local_stack))) is Settlement.DONE

    by_prompt = {r.prompt if r.model.api == "completions" else r.messages[-1]["content"]: r for r in sent}
    assert by_prompt["<s>hi</s>"].model.api == "completions"
    assert by_prompt["hello"].model.api == "chat"
    shown = prompt_of(client, keys["alice"], own["id"])["prompt"]
    assert shown["template"] == "<s>{prompt}</s>" and shown["status"] == "completed"
    assert prompt_of(client, keys["alice"], plain["id"])["prompt"]["status"] == "completed"
