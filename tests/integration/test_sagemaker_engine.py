"""The SageMaker engine against a fake SageMaker Runtime speaking the real wire protocol, through a
real boto3 client: stream formats cut awkwardly, non-streaming, request bodies, error mapping,
mid-stream failures, and that an early close releases the stream."""

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.eventstream import EventStreamBuffer
from promptsvc.domain.catalog import Catalog, Model
from promptsvc.engines.base import Delta, EngineError, EngineEvent, EngineRequest, Finish
from promptsvc.engines.sagemaker import SageMakerEngine, StreamParser

from tests.fakes.sagemaker_runtime import (
    Behaviour,
    FakeSageMakerRuntime,
    HttpError,
    endpoint_not_found,
    internal_failure,
    model_error,
    payload_part,
    service_unavailable,
    stream_exception,
    throttling,
    validation_error,
)

# Multi-byte characters (split across parts by small part sizes), a newline and quotes in the text.
TEXT = 'Héllo wörld ✓ 世界!\nA "quoted" line, then 🙂 and a tab\tend.'
FORMAT_API = {"messages": "chat", "tgi": "tgi", "jsonlines": "completions"}


@pytest.fixture
def server() -> Iterator[FakeSageMakerRuntime]:
    with FakeSageMakerRuntime() as fake:
        yield fake


def sagemaker_client(url: str) -> Any:
    return boto3.client(
        "sagemaker-runtime",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 1}),
    )


def engine_for(url: str, *, streaming: bool = True) -> SageMakerEngine:
    client = sagemaker_client(url)
    return SageMakerEngine(streaming=streaming, client=lambda: client)


def make_model(api: str = "chat", **target: Any) -> Model:
    return Model(
        id="sm-model",
        name="SageMaker model",
        template="<s>[INST] {prompt} [/INST]",
        engine="sagemaker",
        target={"endpointName": "ep", **target},
        parameters={"max_tokens": 64, "temperature": 0.2},
        api=api,
    )


def make_request(model: Model) -> EngineRequest:
    return EngineRequest(
        model=model,
        prompt="<s>[INST] Say hi [/INST]",
        messages=({"role": "user", "content": "Say hi"},),
        parameters=dict(model.parameters),
    )


async def collect(engine: SageMakerEngine, request: EngineRequest) -> list[EngineEvent]:
    return [event async for event in engine.stream(request)]


def run(engine: SageMakerEngine, request: EngineRequest) -> list[EngineEvent]:
    return asyncio.run(collect(engine, request))


def run_until_error(engine: SageMakerEngine, request: EngineRequest) -> tuple[list[EngineEvent], EngineError]:
    events: list[EngineEvent] = []

    async def go() -> None:
        async for event in engine.stream(request):
            events.append(event)

    with pytest.raises(EngineError) as caught:
        asyncio.run(go())
    return events, caught.value


def text_and_finish(events: list[EngineEvent]) -> tuple[str, Finish]:
    *deltas, finish = events
    assert all(isinstance(event, Delta) for event in deltas), events
    assert isinstance(finish, Finish), events
    return "".join(delta.text for delta in deltas), finish  # type: ignore[union-attr]


def assert_engine_threads_end() -> None:
    for thread in threading.enumerate():
        if thread.name.startswith("sagemaker-"):
            thread.join(10)
            assert not thread.is_alive(), f"{thread.name} is still blocked"


# --- the fake's wire encoding, checked with botocore's own decoder ---------------------------------


def test_fake_event_stream_encoding_decodes_with_botocore() -> None:
    buffer = EventStreamBuffer()
    buffer.add_data(payload_part(b'data: {"x": 1}\n') + stream_exception("ModelStreamError", "broken"))
    part, error = list(buffer)
    assert part.headers == {
        ":event-type": "PayloadPart",
        ":content-type": "application/octet-stream",
        ":message-type": "event",
    }
    assert part.payload == b'data: {"x": 1}\n'
    assert part.to_response_dict()["status_code"] == 200
    assert error.headers[":message-type"] == "exception"
    assert error.headers[":exception-type"] == "ModelStreamError"
    assert json.loads(error.payload) == {"Message": "broken", "ErrorCode": "ModelInvocationTimeExceeded"}


# --- streaming ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["messages", "tgi", "jsonlines"])
@pytest.mark.parametrize("part_size", [None, 1, 7, (3, 1, 250), 100_000], ids=str)
def test_stream_formats_with_any_chunking(server: FakeSageMakerRuntime, fmt: str, part_size: Any) -> None:
    server.behaviour = Behaviour(text=TEXT, format=fmt, part_size=part_size)  # type: ignore[arg-type]
    events = run(engine_for(server.url), make_request(make_model(FORMAT_API[fmt])))
    text, finish = text_and_finish(events)
    assert text == TEXT
    assert finish.reason == "stop"
    pieces = len(Behaviour(text=TEXT).pieces())
    if fmt == "messages":  # the usage chunk
        assert (finish.prompt_tokens, finish.completion_tokens) == (7, pieces)
    else:  # TGI/LMI details count the end-of-sequence token too
        assert finish.completion_tokens == pieces + 1
    assert server.last.wait().disconnected is False


@pytest.mark.parametrize("fmt", ["messages", "tgi", "jsonlines"])
def test_stream_finish_reason_length(server: FakeSageMakerRuntime, fmt: str) -> None:
    server.behaviour = Behaviour(text="cut short", format=fmt, finish_reason="length", usage=False)  # type: ignore[arg-type]
    text, finish = text_and_finish(run(engine_for(server.url), make_request(make_model(FORMAT_API[fmt]))))
    assert (text, finish.reason) == ("cut short", "length")


def test_stream_with_one_delta_per_token(server: FakeSageMakerRuntime) -> None:
    server.behaviour = Behaviour(tokens=["Hel", "lo", " ", "there"], text="Hello there", format="tgi")
    events = run(engine_for(server.url), make_request(make_model("tgi")))
    assert events[:-1] == [Delta("Hel"), Delta("lo"), Delta(" "), Delta("there")]
    assert events[-1] == Finish("stop", completion_tokens=5)


def test_empty_answer_is_just_a_finish(server: FakeSageMakerRuntime) -> None:
    server.behaviour = Behaviour(text="", tokens=[], format="tgi")
    assert run(engine_for(server.url), make_request(make_model("tgi"))) == [
        Finish("stop", completion_tokens=1)
    ]


# --- non-streaming --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["messages", "tgi", "jsonlines"])
def test_non_streaming(server: FakeSageMakerRuntime, fmt: str) -> None:
    server.behaviour = Behaviour(text=TEXT, format=fmt)  # type: ignore[arg-type]
    events = run(engine_for(server.url, streaming=False), make_request(make_model(FORMAT_API[fmt])))
    pieces = len(Behaviour(text=TEXT).pieces())
    assert events[0] == Delta(TEXT)
    # TGI's native schema reports no prompt tokens: None (the consumer estimates them).
    expected = Finish("stop", 7, pieces) if fmt == "messages" else Finish("stop", None, pieces)
    assert events[1:] == [expected]
    assert server.last.operation == "InvokeEndpoint"
    assert server.last.json["stream"] is False


# --- what is sent -----------------------------------------------------------------------------------


def test_chat_request(server: FakeSageMakerRuntime) -> None:
    model = make_model("chat", inferenceComponentName="ic-llama")
    run(engine_for(server.url), make_request(model))
    sent = server.last
    assert sent.operation == "InvokeEndpointWithResponseStream"
    assert sent.endpoint == "ep"
    assert sent.inference_component == "ic-llama"
    assert sent.headers["content-type"] == "application/json"
    assert sent.accept == "text/event-stream"
    assert sent.json == {
        "messages": [{"role": "user", "content": "Say hi"}],
        "max_tokens": 64,
        "temperature": 0.2,
        "stream": True,
    }


def test_chat_request_without_messages_sends_the_prompt_and_model_name(server: FakeSageMakerRuntime) -> None:
    model = make_model("chat", modelName="tgi")
    run(engine_for(server.url), EngineRequest(model=model, prompt="Hi", parameters={"max_new_tokens": 5}))
    assert server.last.json == {
        "model": "tgi",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 5,
        "stream": True,
    }
    assert server.last.inference_component is None


@pytest.mark.parametrize("api", ["tgi", "completions"])
def test_native_request(server: FakeSageMakerRuntime, api: str) -> None:
    server.behaviour = Behaviour(format="tgi")
    run(engine_for(server.url, streaming=False), make_request(make_model(api)))
    assert server.last.accept == "application/json"
    assert server.last.json == {
        "inputs": "<s>[INST] Say hi [/INST]",
        "parameters": {"max_new_tokens": 64, "temperature": 0.2, "details": True},
        "stream": False,
    }


def test_unknown_api_and_missing_endpoint_are_not_retryable(server: FakeSageMakerRuntime) -> None:
    _, error = run_until_error(engine_for(server.url), make_request(make_model("embeddings")))
    assert error.retryable is False
    model = Model(id="m", name="m", template="{prompt}", engine="sagemaker", target={})
    _, error = run_until_error(engine_for(server.url), make_request(model))
    assert error.retryable is False
    assert server.requests == []


# --- errors -----------------------------------------------------------------------------------------

ERRORS = [
    (throttling(429), True, 429),
    (throttling(400), True, 400),  # throttling is retryable whatever its status
    (service_unavailable(), True, 503),
    (internal_failure(), True, 500),
    (model_error(503), True, 503),
    (model_error(429), True, 429),
    (model_error(500), True, 500),
    (validation_error("Invalid input"), False, 400),
    (model_error(400), False, 400),
    (model_error(422), False, 422),
]


@pytest.mark.parametrize("streaming", [True, False], ids=["stream", "invoke"])
@pytest.mark.parametrize(("error", "retryable", "status"), ERRORS, ids=lambda v: getattr(v, "code", None))
def test_http_errors(
    server: FakeSageMakerRuntime, streaming: bool, error: HttpError, retryable: bool, status: int
) -> None:
    server.behaviour = Behaviour(error=error)
    events, raised = run_until_error(engine_for(server.url, streaming=streaming), make_request(make_model()))
    assert events == []
    assert (raised.retryable, raised.status_code) == (retryable, status)
    assert "'ep'" in str(raised)


def test_model_error_carries_the_containers_message(server: FakeSageMakerRuntime) -> None:
    server.behaviour = Behaviour(error=model_error(400, '{"error": "Input validation error: too long"}'))
    _, raised = run_until_error(engine_for(server.url), make_request(make_model()))
    assert "too long" in str(raised)


def test_unknown_endpoint_is_not_retryable() -> None:
    with FakeSageMakerRuntime(endpoints={"other": Behaviour()}) as fake:
        _, raised = run_until_error(engine_for(fake.url), make_request(make_model()))
    assert (raised.retryable, raised.status_code) == (False, 400)
    assert "not found" in str(raised)
    assert endpoint_not_found("ep").message in str(raised)


def test_connection_refused_is_retryable() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for streaming in (True, False):
        _, raised = run_until_error(
            engine_for(f"http://127.0.0.1:{port}", streaming=streaming), make_request(make_model())
        )
        assert raised.retryable is True


@pytest.mark.parametrize("kind", ["ModelStreamError", "InternalStreamFailure"])
def test_mid_stream_error_is_retryable(server: FakeSageMakerRuntime, kind: str) -> None:
    server.behaviour = Behaviour(text="one two three four", stream_error_after=2, stream_error=kind)
    events, raised = run_until_error(engine_for(server.url), make_request(make_model()))
    assert events == [Delta("one "), Delta("two ")]
    assert raised.retryable is True
    assert kind in str(raised)


def test_in_stream_error_events_of_older_botocore_are_retryable() -> None:
    """Some botocore versions hand in-stream exceptions over as events instead of raising."""

    class Stream:
        closed = False

        def __iter__(self) -> Iterator[dict[str, Any]]:
            yield {"PayloadPart": {"Bytes": b'{"token": {"text": "Hi"}}\n'}}
            yield {"ModelStreamError": {"Message": "broken", "ErrorCode": "StreamBroken"}}

        def close(self) -> None:
            self.closed = True

    stream = Stream()

    class Client:
        def invoke_endpoint_with_response_stream(self, **kwargs: Any) -> dict[str, Any]:
            return {"Body": stream}

    engine = SageMakerEngine(client=Client)
    events, raised = run_until_error(engine, make_request(make_model("tgi")))
    assert events == [Delta("Hi")]
    assert raised.retryable is True
    assert_engine_threads_end()
    assert stream.closed


def test_container_error_line_in_the_stream() -> None:
    parser = StreamParser()
    with pytest.raises(EngineError) as overloaded:
        parser.feed(b'data:{"error":"Model is overloaded","error_type":"overloaded"}\n\n')
    assert overloaded.value.retryable is True
    with pytest.raises(EngineError) as invalid:
        StreamParser().feed(b'data:{"error":"Input validation error","error_type":"validation"}\n')
    assert invalid.value.retryable is False


def test_garbage_in_the_stream_is_a_retryable_error() -> None:
    """As from the OpenAI engine (one parser reads both: tests/unit/test_stream_chunks.py)."""
    with pytest.raises(EngineError) as garbage:
        StreamParser().feed(b"data: {not json\n\n")
    assert garbage.value.retryable and "malformed stream chunk" in str(garbage.value)


def test_parser_skips_sse_framing_and_reads_a_last_line_without_newline() -> None:
    parser = StreamParser()
    texts = parser.feed(
        b': ping\r\nevent: message\r\nid: 1\r\ndata: {"choices":[{"delta":{"content":"a"}}]}\r\n\r\n'
    )
    texts += parser.feed(b'{"token": {"text": "b"}, "details": {"finish_reason": "length"}}')
    texts += parser.close()
    assert texts == ["a", "b"]
    assert parser.finish().reason == "length"


# --- closing early and stalls -----------------------------------------------------------------------

LONG = Behaviour(
    tokens=[f"t{i} " for i in range(200)], text="".join(f"t{i} " for i in range(200)), part_delay=0.02
)


def test_early_close_releases_the_stream(server: FakeSageMakerRuntime) -> None:
    server.behaviour = LONG

    async def read_two_then_close() -> list[EngineEvent]:
        stream = engine_for(server.url).stream(make_request(make_model()))
        events = [await anext(stream), await anext(stream)]
        await stream.aclose()  # type: ignore[attr-defined]
        return events

    assert asyncio.run(read_two_then_close()) == [Delta("t0 "), Delta("t1 ")]
    received = server.last.wait()
    assert received.disconnected is True
    assert received.parts_sent < len(LONG.pieces())
    assert_engine_threads_end()


def test_cancellation_while_waiting_releases_a_stalled_stream(server: FakeSageMakerRuntime) -> None:
    server.behaviour = Behaviour(stall_after=1)

    async def consume_with_outer_timeout() -> list[EngineEvent]:
        events: list[EngineEvent] = []
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                async for event in engine_for(server.url).stream(make_request(make_model())):
                    events.append(event)
        return events

    assert asyncio.run(consume_with_outer_timeout()) == [Delta("The ")]
    assert server.last.wait().disconnected is True  # the blocked read was interrupted
    assert_engine_threads_end()


def test_the_consumers_stall_timeout_releases_a_stalled_stream(server: FakeSageMakerRuntime) -> None:
    """The consumer bounds each event with wait_for(anext(...), stall) and then closes the stream."""
    server.behaviour = Behaviour(stall_after=2)

    async def consume_like_the_runner() -> list[EngineEvent]:
        events = engine_for(server.url).stream(make_request(make_model()))
        received: list[EngineEvent] = []
        try:
            while True:
                received.append(await asyncio.wait_for(anext(events), 0.3))
        except TimeoutError:
            return received
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    assert asyncio.run(consume_like_the_runner()) == [Delta("The "), Delta("quick ")]
    assert server.last.wait().disconnected is True
    assert_engine_threads_end()


def test_queued_behaviours_answer_in_order(server: FakeSageMakerRuntime) -> None:
    # botocore retries a throttle once (max_attempts=1 means one retry), so two throttles fail the call
    server.queue(Behaviour(error=throttling()), Behaviour(error=throttling()), Behaviour(text="ok"))
    engine = engine_for(server.url)
    _, raised = run_until_error(engine, make_request(make_model()))
    assert raised.retryable is True
    assert text_and_finish(run(engine, make_request(make_model())))[0] == "ok"
    assert text_and_finish(run(engine, make_request(make_model())))[0] == Behaviour().text


# --- the catalog entry infra/sagemaker/deploy.py prints ------------------------------------------


def test_deploy_dry_run_prints_a_catalog_entry_the_engine_serves() -> None:
    """deploy.py needs neither AWS nor the SageMaker SDK for a dry run, and its entry works."""
    script = Path(__file__).resolve().parents[2] / "infra" / "sagemaker" / "deploy.py"
    env = {name: value for name, value in os.environ.items() if name != "HF_TOKEN"}
    done = subprocess.run(
        [sys.executable, str(script), "--model-id", "org/Tiny-LLM-7B", "--dry-run", "--image-uri", "img"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    entry = json.loads(done.stdout)
    model = Catalog.from_dict({"models": [entry]}).resolve("org/Tiny-LLM-7B")
    assert (model.engine, model.api) == ("sagemaker", "chat")
    assert model.target == {"endpointName": "promptsvc-tiny-llm-7b"}
    assert '"image": "img"' in done.stderr

    with FakeSageMakerRuntime(endpoints={"promptsvc-tiny-llm-7b": Behaviour(text="served")}) as fake:
        request = EngineRequest(model=model, prompt="hi", parameters=dict(model.parameters))
        assert text_and_finish(run(engine_for(fake.url), request))[0] == "served"
        assert fake.last.json["max_tokens"] == entry["parameters"]["max_tokens"]
