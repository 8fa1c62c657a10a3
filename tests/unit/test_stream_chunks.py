"""Both engines read their streams with one parser (promptsvc.engines.chunks), so they agree on
every chunk: the text and the Finish of a good stream, the verdict on an error object, and a
malformed chunk, which is a retryable failure from either (it used to be final from SageMaker)."""

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from promptsvc.domain.catalog import Model
from promptsvc.engines.base import Delta, EngineError, EngineEvent, EngineRequest, Finish
from promptsvc.engines.openai import OpenAIEngine
from promptsvc.engines.sagemaker import SageMakerEngine

Outcome = tuple[list[EngineEvent], EngineError | None]


def chunk(text: str = "", finish: str | None = None, usage: dict[str, int] | None = None) -> str:
    choices = [] if usage else [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]
    return json.dumps({"object": "chat.completion.chunk", "choices": choices, "usage": usage})


def request(engine: str, **target: Any) -> EngineRequest:
    model = Model(id="m", name="M", template="{prompt}", engine=engine, target=target, api="chat")
    return EngineRequest(model=model, prompt="hi", messages=({"role": "user", "content": "hi"},))


async def outcome(events: Any) -> Outcome:
    seen: list[EngineEvent] = []
    try:
        async for event in events:
            seen.append(event)
    except EngineError as error:
        return seen, error
    return seen, None


def from_openai(*payloads: str) -> Outcome:
    """The payloads as a vLLM server's SSE events."""
    body = "".join(f"data: {payload}\n\n" for payload in payloads).encode()
    sse = httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda _: sse))
    engine = OpenAIEngine("http://engine.test/v1", http=http)
    return asyncio.run(outcome(engine.stream(request("openai"))))


def from_sagemaker(*payloads: str) -> Outcome:
    """The payloads as an LMI container's Messages API stream, one PayloadPart per event."""

    class Stream:
        def __iter__(self) -> Iterator[dict[str, Any]]:
            for payload in payloads:
                yield {"PayloadPart": {"Bytes": f"data: {payload}\n\n".encode()}}

        def close(self) -> None:
            pass

    class Client:
        def invoke_endpoint_with_response_stream(self, **_: Any) -> dict[str, Any]:
            return {"Body": Stream()}

    engine = SageMakerEngine(client=Client)
    return asyncio.run(outcome(engine.stream(request("sagemaker", endpointName="ep"))))


def test_both_engines_read_a_chat_stream_alike() -> None:
    payloads = (
        chunk("Hel"),
        chunk("lo"),
        chunk(finish="length"),
        chunk(usage={"prompt_tokens": 3, "completion_tokens": 2}),
        "[DONE]",
    )

    expected = ([Delta("Hel"), Delta("lo"), Finish("length", 3, 2)], None)
    assert from_openai(*payloads) == expected
    assert from_sagemaker(*payloads) == expected


@pytest.mark.parametrize(
    "garbage",
    [
        "{not json",
        "<html>502 Bad Gateway</html>",
        "[1, 2]",
        '{"choices": "none"}',
        '{"choices": [{"index": 0, "delta": {"content": ["a", "b"]}}]}',
        '{"token": {"text": 7}}',
    ],
    ids=["not-json", "html", "not-an-object", "choices-not-a-list", "content-not-text", "token-not-text"],
)
def test_a_malformed_chunk_is_a_retryable_error_from_both_engines(garbage: str) -> None:
    for events, error in (from_openai(chunk("Hi"), garbage), from_sagemaker(chunk("Hi"), garbage)):
        assert events == [Delta("Hi")]
        assert error is not None
        assert error.retryable is True
        assert "malformed stream chunk" in str(error)


@pytest.mark.parametrize(
    ("error_object", "retryable", "status"),
    [
        ({"error": {"object": "error", "message": "engine died", "code": 500}}, True, 500),
        ({"object": "error", "message": "too many requests", "code": 429}, True, 429),
        ({"error": {"message": "bad request", "code": 400}}, False, 400),
        ({"error": "Model is overloaded", "error_type": "overloaded"}, True, None),
        ({"error": "Input validation error", "error_type": "validation"}, False, None),
    ],
    ids=["vllm-500", "vllm-429", "openai-400", "tgi-overloaded", "tgi-validation"],
)
def test_an_error_object_gets_the_same_verdict_from_both_engines(
    error_object: dict[str, Any], retryable: bool, status: int | None
) -> None:
    for events, error in (from_openai(json.dumps(error_object)), from_sagemaker(json.dumps(error_object))):
        assert events == []
        assert error is not None
        assert (error.retryable, error.status_code) == (retryable, status)
