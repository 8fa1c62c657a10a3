"""The OpenAI-compatible engine against a fake server speaking the real protocol over a socket."""

import asyncio
import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from promptsvc.domain.catalog import Model
from promptsvc.engines.base import Delta, EngineError, EngineEvent, EngineRequest, Finish
from promptsvc.engines.openai import OpenAIEngine, SSEDecoder

from tests.fakes.openai_server import Behaviour, FakeOpenAIServer

TEXT = "Paris is the capital of France."


@pytest.fixture(scope="module")
def shared_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture
def server(shared_server: FakeOpenAIServer) -> FakeOpenAIServer:
    """One server for the module (stopping uvicorn takes a moment); each test starts it afresh."""
    shared_server.behaviour = Behaviour(text=TEXT)
    shared_server.reset()
    return shared_server


def model(api: str = "chat", **target: Any) -> Model:
    return Model(
        id="tiny-llm",
        name="Tiny LLM",
        template="Q: {prompt}\nA:",
        engine="openai",
        target=target,
        parameters={"max_tokens": 64, "temperature": 0.2},
        api=api,
    )


def request(api: str = "chat", parameters: dict[str, Any] | None = None, **target: Any) -> EngineRequest:
    m = model(api, **target)
    return EngineRequest(
        model=m,
        prompt="Q: What is the capital of France?\nA:",
        messages=({"role": "user", "content": "What is the capital of France?"},),
        parameters=dict(m.parameters) if parameters is None else parameters,
    )


async def collect(engine: OpenAIEngine, req: EngineRequest) -> list[EngineEvent]:
    return [event async for event in engine.stream(req)]


def run(engine: OpenAIEngine, req: EngineRequest) -> list[EngineEvent]:
    return asyncio.run(collect(engine, req))


def run_error(engine: OpenAIEngine, req: EngineRequest) -> EngineError:
    with pytest.raises(EngineError) as info:
        run(engine, req)
    return info.value


def text_of(events: list[EngineEvent]) -> str:
    return "".join(event.text for event in events if isinstance(event, Delta))


def assert_well_formed(events: list[EngineEvent]) -> Finish:
    """Deltas with text, then exactly one Finish, last."""
    *deltas, finish = events
    assert all(isinstance(event, Delta) and event.text for event in deltas)
    assert isinstance(finish, Finish)
    return finish


# -- the happy paths ------------------------------------------------------------------------------


def test_chat_streams_deltas_then_one_finish_with_usage(server: FakeOpenAIServer) -> None:
    events = run(OpenAIEngine(server.base_url), request("chat"))

    finish = assert_well_formed(events)
    assert text_of(events) == TEXT
    assert len(events) - 1 == len(server.behaviour.pieces()) > 1
    assert finish == Finish("stop", prompt_tokens=6, completion_tokens=len(server.behaviour.pieces()))
    sent = server.last_request
    assert sent.path == "/v1/chat/completions"
    assert sent.body == {
        "model": "tiny-llm",
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 64,
        "temperature": 0.2,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert "authorization" not in sent.headers
    assert sent.wait() == "completed"


def test_completions_send_the_rendered_prompt(server: FakeOpenAIServer) -> None:
    params = {"max_tokens": 5, "stop": ["\n"], "seed": 7, "top_p": 0.9}
    events = run(OpenAIEngine(server.base_url), request("completions", parameters=params))

    finish = assert_well_formed(events)
    assert text_of(events) == TEXT
    assert finish == Finish("stop", prompt_tokens=8, completion_tokens=len(server.behaviour.pieces()))
    sent = server.last_request
    assert sent.path == "/v1/completions"
    assert "messages" not in sent.body
    assert sent.body["prompt"] == "Q: What is the capital of France?\nA:"
    assert {k: sent.body[k] for k in params} == params
    assert sent.body["stream"] is True
    assert sent.body["stream_options"] == {"include_usage": True}


def test_request_parameters_cannot_override_the_body_the_engine_owns(server: FakeOpenAIServer) -> None:
    params = {"model": "other", "stream": False, "stream_options": {"continuous_usage_stats": True}}
    run(OpenAIEngine(server.base_url), request("chat", parameters=params))

    body = server.last_request.body
    assert body["model"] == "tiny-llm"
    assert body["stream"] is True
    assert body["stream_options"] == {"continuous_usage_stats": True, "include_usage": True}


def test_the_finish_reason_is_the_servers(server: FakeOpenAIServer) -> None:
    server.behaviour = Behaviour(text="cut short", finish_reason="length")
    events = run(OpenAIEngine(server.base_url), request("completions"))
    assert events[-1] == Finish("length", prompt_tokens=8, completion_tokens=2)


def test_a_models_base_url_and_served_name_override_the_engines(server: FakeOpenAIServer) -> None:
    server.behaviour = Behaviour(text=TEXT, models=("org/tiny-llm-awq",))
    engine = OpenAIEngine("http://127.0.0.1:9/v1")  # a port nothing listens on

    events = run(engine, request("chat", baseUrl=server.base_url + "/", servedModelName="org/tiny-llm-awq"))

    assert text_of(events) == TEXT
    assert server.last_request.body["model"] == "org/tiny-llm-awq"


def test_the_catalog_id_is_not_a_served_model_name(server: FakeOpenAIServer) -> None:
    server.behaviour = Behaviour(models=("org/tiny-llm-awq",))
    error = run_error(OpenAIEngine(server.base_url), request("chat"))
    assert not error.retryable
    assert error.status_code == 404
    assert "404" in str(error)
    assert "The model `tiny-llm` does not exist." in str(error)


def test_the_api_key_is_sent_as_a_bearer_token(server: FakeOpenAIServer) -> None:
    server.behaviour = Behaviour(text=TEXT, api_key="sk-local")

    assert text_of(run(OpenAIEngine(server.base_url, api_key="sk-local"), request())) == TEXT
    assert server.last_request.headers["authorization"] == "Bearer sk-local"

    error = run_error(OpenAIEngine(server.base_url), request())
    assert (error.status_code, error.retryable) == (401, False)
    assert "401" in str(error) and "Incorrect API key provided." in str(error)


def test_sse_starlette_framing_with_crlf_and_ping_comments(server: FakeOpenAIServer) -> None:
    server.behaviour = Behaviour(text=TEXT, crlf=True, pings=True)
    events = run(OpenAIEngine(server.base_url), request())
    assert text_of(events) == TEXT
    assert isinstance(events[-1], Finish)


def test_unicode_line_separators_inside_tokens_survive(server: FakeOpenAIServer) -> None:
    """The fake sends raw UTF-8 JSON, as vLLM does; U+2028 and U+0085 must not split a data line."""
    text = "one\u2028two\x85three — ünïcödé 日本語 🙂"
    server.behaviour = Behaviour(text=text, tokens=7)
    assert text_of(run(OpenAIEngine(server.base_url), request())) == text


def test_an_injected_client_is_reused_and_left_open(server: FakeOpenAIServer) -> None:
    async def twice() -> tuple[str, str, bool]:
        async with httpx.AsyncClient() as client:
            engine = OpenAIEngine(server.base_url, http=client)
            first = text_of(await collect(engine, request()))
            second = text_of(await collect(engine, request("completions")))
            return first, second, client.is_closed

    assert asyncio.run(twice()) == (TEXT, TEXT, False)
    assert [r.path for r in server.requests] == ["/v1/chat/completions", "/v1/completions"]


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(500, True), (502, True), (503, True), (429, True), (408, True), (400, False), (404, False)],
)
@pytest.mark.parametrize("style", ["openai", "vllm"])
def test_http_errors_carry_the_status_and_the_servers_message(
    server: FakeOpenAIServer, status: int, retryable: bool, style: str
) -> None:
    message = f"custom failure {status}"
    server.behaviour = Behaviour(error_status=status, error_message=message, error_style=style)  # type: ignore[arg-type]

    error = run_error(OpenAIEngine(server.base_url), request())

    assert error.retryable is retryable
    assert error.status_code == status
    assert f"HTTP {status}" in str(error)
    assert message in str(error)
    assert server.last_request.wait() == "rejected"


def mock_engine(handler: Callable[[httpx.Request], httpx.Response]) -> OpenAIEngine:
    """An engine whose server is a function: for bodies the fake never sends."""
    return OpenAIEngine(
        "http://engine.test/v1", http=httpx.AsyncClient(transport=httpx.MockTransport(handler))
    )


def test_a_non_json_error_body_is_quoted_truncated() -> None:
    engine = mock_engine(lambda _: httpx.Response(502, text="<html>" + "bad gateway " * 100 + "</html>"))
    error = run_error(engine, request())
    assert error.retryable and error.status_code == 502
    assert "HTTP 502 Bad Gateway" in str(error) and "<html>bad gateway" in str(error)
    assert len(str(error)) < 400


def test_connection_refused_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound but not listening: connections are refused

        error = run_error(OpenAIEngine(f"http://127.0.0.1:{port}/v1"), request())

    assert error.retryable and error.status_code is None
    assert f"cannot reach http://127.0.0.1:{port}/v1/chat/completions" in str(error)


@pytest.mark.parametrize("abruptly", [True, False], ids=["dropped", "ended-early"])
def test_a_cut_stream_is_retryable(server: FakeOpenAIServer, abruptly: bool) -> None:
    server.behaviour = Behaviour(text=TEXT, cut_after=3, cut_abruptly=abruptly)
    received: list[EngineEvent] = []

    async def consume() -> None:
        async for event in OpenAIEngine(server.base_url).stream(request()):
            received.append(event)

    with pytest.raises(EngineError) as info:
        asyncio.run(consume())

    assert info.value.retryable
    assert text_of(received) == "".join(server.behaviour.pieces()[:3])
    assert not any(isinstance(event, Finish) for event in received)
    assert server.last_request.wait() == "cut"


@pytest.mark.parametrize(("code", "retryable"), [(500, True), (429, True), (400, False)])
def test_an_error_inside_the_stream_fails_the_call(
    server: FakeOpenAIServer, code: int, retryable: bool
) -> None:
    server.behaviour = Behaviour(text=TEXT, stream_error_after=2, stream_error_code=code)
    error = run_error(OpenAIEngine(server.base_url), request())
    assert error.retryable is retryable
    assert error.status_code == code
    assert str(code) in str(error)


def test_closing_the_stream_early_disconnects_from_the_server(server: FakeOpenAIServer) -> None:
    server.behaviour = Behaviour(text=TEXT, stall_after=2, stall_seconds=60)

    async def take_two() -> tuple[list[EngineEvent], str]:
        stream = OpenAIEngine(server.base_url).stream(request())
        events = [await anext(stream), await anext(stream)]
        await stream.aclose()  # type: ignore[attr-defined]
        # Seen while this loop still runs: the close itself hung up, not the loop's shutdown.
        return events, await asyncio.to_thread(server.last_request.wait)

    events, outcome = asyncio.run(take_two())
    assert all(isinstance(event, Delta) for event in events)
    assert outcome == "disconnected"


def test_cancelling_the_consumer_disconnects_from_the_server(server: FakeOpenAIServer) -> None:
    """What the runner's stall timeout does: cancel the task iterating the stream."""
    server.behaviour = Behaviour(text=TEXT, stall_after=2, stall_seconds=60)

    async def cancel_after_two() -> tuple[list[EngineEvent], str]:
        received: list[EngineEvent] = []
        two = asyncio.Event()

        async def consume() -> None:
            async for event in OpenAIEngine(server.base_url).stream(request()):
                received.append(event)
                if len(received) == 2:
                    two.set()

        task = asyncio.create_task(consume())
        await two.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return received, await asyncio.to_thread(server.last_request.wait)

    received, outcome = asyncio.run(cancel_after_two())
    assert len(received) == 2
    assert outcome == "disconnected"


def test_the_runners_stall_timeout_disconnects_from_the_server(server: FakeOpenAIServer) -> None:
    """The runner's pattern: `wait_for(anext(events), stall_timeout)`, then `aclose()`."""
    server.behaviour = Behaviour(text=TEXT, stall_after=2, stall_seconds=60)

    async def stall() -> tuple[int, str]:
        events = OpenAIEngine(server.base_url).stream(request())
        received = [await anext(events), await anext(events)]
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(events), 0.2)
        await events.aclose()  # type: ignore[attr-defined]
        return len(received), await asyncio.to_thread(server.last_request.wait)

    assert asyncio.run(stall()) == (2, "disconnected")


def test_closing_early_leaves_an_injected_client_usable(server: FakeOpenAIServer) -> None:
    server.behaviour = Behaviour(text=TEXT, stall_after=1, stall_seconds=60)

    async def close_then_reuse() -> tuple[str, str]:
        async with httpx.AsyncClient() as client:
            engine = OpenAIEngine(server.base_url, http=client)
            stream = engine.stream(request())
            await anext(stream)
            await stream.aclose()  # type: ignore[attr-defined]
            first = await asyncio.to_thread(server.last_request.wait)
            server.behaviour = Behaviour(text=TEXT)
            return first, text_of(await collect(engine, request()))

    assert asyncio.run(close_then_reuse()) == ("disconnected", TEXT)
    assert [r.wait() for r in server.requests] == ["disconnected", "completed"]


@pytest.mark.parametrize(
    ("target", "api", "words"),
    [({}, "embeddings", "unsupported api"), ({"baseUrl": "localhost:8000/v1"}, "chat", "invalid engine URL")],
)
def test_configuration_errors_are_not_retryable(target: dict[str, Any], api: str, words: str) -> None:
    error = run_error(OpenAIEngine(""), request(api, **target))
    assert not error.retryable
    assert words in str(error)


def test_no_base_url_at_all_is_not_retryable() -> None:
    error = run_error(OpenAIEngine(""), request())
    assert not error.retryable and "no baseUrl" in str(error)


# -- what other servers do ------------------------------------------------------------------------


def sse(*payloads: Any, tail: str = "") -> httpx.Response:
    body = "".join(f"data: {p if isinstance(p, str) else json.dumps(p)}\n\n" for p in payloads) + tail
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body.encode())


def test_a_finish_reason_without_done_still_finishes() -> None:
    """Some servers close after the last chunk without `[DONE]`; usage may ride on that chunk."""
    last = {"choices": [{"index": 0, "text": "!", "finish_reason": "stop"}], "usage": {"prompt_tokens": 3}}
    engine = mock_engine(lambda _: sse({"choices": [{"index": 0, "text": "Hi"}]}, last))
    # No completion tokens reported: None, which the consumer estimates (domain/usage.py).
    assert run(engine, request("completions")) == [Delta("Hi"), Delta("!"), Finish("stop", 3, None)]


def test_a_final_done_without_its_blank_line_is_accepted() -> None:
    chunk = {"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]}
    engine = mock_engine(lambda _: sse(chunk, tail="data: [DONE]\n"))
    assert run(engine, request()) == [Delta("Hi"), Finish("stop", None, None)]  # no usage: not reported


def test_garbage_in_the_stream_is_a_retryable_error() -> None:
    error = run_error(mock_engine(lambda _: sse("{not json")), request())
    assert error.retryable and "malformed stream chunk" in str(error)


def test_a_server_ignoring_stream_answers_with_one_json_body() -> None:
    body = {
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": TEXT}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 6, "completion_tokens": 7, "total_tokens": 13},
    }
    engine = mock_engine(lambda _: httpx.Response(200, json=body))
    assert run(engine, request()) == [Delta(TEXT), Finish("stop", 6, 7)]


def test_the_fake_answers_without_streaming_too(server: FakeOpenAIServer) -> None:
    """The fake's `stream: false` path, which other tests and the benchmark may use."""
    body = {"model": "m", "messages": [{"role": "user", "content": "hi there"}], "stream": False}
    response = httpx.post(server.base_url + "/chat/completions", json=body)
    assert response.status_code == 200
    answer = response.json()
    assert answer["choices"][0]["message"]["content"] == TEXT
    assert answer["usage"]["prompt_tokens"] == 2


# -- the SSE decoder ------------------------------------------------------------------------------


def test_sse_decoder_handles_split_lines_comments_and_multiline_data() -> None:
    decoder = SSEDecoder()
    stream = b'\xef\xbb\xbf: hello\r\nevent: x\r\ndata: {"a":\r\ndata:1}\r\n\r\ndata: [DO'
    out = [data for i in range(len(stream)) for data in decoder.feed(stream[i : i + 1])]
    out += decoder.feed(b"NE]\r")
    out += decoder.feed(b"\n\r\n")
    assert out == ['{"a":\n1}', "[DONE]"]
    assert decoder.close() == []


def test_sse_decoder_drops_fields_other_than_data_and_needs_a_blank_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"id: 1\nretry: 10\ndata\ndata: x\n") == []
    assert decoder.feed(b"\n") == ["\nx"]
    assert decoder.feed("data: é\u2028\n\n".encode()) == ["é\u2028"]
