"""End to end: the Python SDK (promptsvc.client) against `promptsvc dev` over real sockets.

Every wait is bounded; nothing asserts timing. The retry rule is tested against a tiny local HTTP
server that answers what the rule is about (429 with Retry-After, 5xx)."""

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import urlparse

import pytest
from promptsvc.client import ApiError, AsyncClient, Client, ThreadEvent, sync_client

from tests.e2e.conftest import ADMIN_KEY, DevServer, dev_server
from tests.e2e.tcp_proxy import TcpProxy
from tests.e2e.without_server_deps import run_without_server_deps

pytestmark = pytest.mark.e2e

CHUNKS = 30  # with 0.05 s a chunk, a run streams for about 1.5 s: several delta events
WAIT = 60.0  # a bound for a whole stream, generous: the machine is shared


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    with dev_server(mock_chunk_delay=0.05, env={"MOCK_CHUNKS": str(CHUNKS)}) as started:
        yield started


@pytest.fixture
def alice(server: DevServer, users: dict[str, str]) -> Iterator[Client]:
    with Client(server.base_url, users["alice"], server.ws_url) as client:
        yield client


def answer_of(text: str) -> str:
    return f"[INST]{text}[/INST]"  # the mock engine echoes the rendered prompt


def test_a_sync_add_answers_the_prompt_and_get_reads_it(alice: Client) -> None:
    added = alice.add_prompt("What is a banana?", sync=True)
    assert (added.status, added.answer) == ("completed", answer_of("What is a banana?"))
    assert added.id.startswith("prm_") and added.thread_id and added.user_id == "alice"
    got = alice.get_prompt(added.id)
    assert (got.id, got.status, got.answer, got.thread_id) == (
        added.id,
        "completed",
        added.answer,
        added.thread_id,
    )


def test_a_retried_add_is_the_same_prompt(alice: Client) -> None:
    """What makes retrying an add safe: the client's id makes a re-sent add return the stored prompt."""
    first = alice.add_prompt("Once only", thread_id="client-once", prompt_id="prm_client_once", sync=True)
    again = alice.add_prompt("Once only", thread_id="client-once", prompt_id="prm_client_once", sync=True)
    assert again.id == first.id and again.created_at == first.created_at
    assert [p.id for p in alice.list_prompts(thread_id="client-once")] == [first.id]


def test_list_prompts_follows_the_cursor_across_pages(alice: Client) -> None:
    added = {alice.add_prompt(f"list me {n}", thread_id="client-list").id for n in range(12)}
    listed = [p.id for p in alice.list_prompts(thread_id="client-list", page_size=5)]
    assert sorted(listed) == sorted(added)  # three pages, nothing repeated or missed
    assert len(list(alice.list_prompts(thread_id="client-list", limit=7, page_size=5))) == 7
    alice.wait_prompt(sorted(added)[0])
    completed = list(alice.list_prompts(status="completed", thread_id="client-list"))
    assert completed and all(p.status == "completed" for p in completed)


def test_cancel_and_remove(alice: Client) -> None:
    added = alice.add_prompt("cancel me", thread_id="client-cancel")
    canceled = alice.cancel_prompt(added.id)
    assert (canceled.id, canceled.status) == (added.id, "canceled")
    assert alice.get_prompt(added.id).status == "canceled"
    alice.remove_prompt(added.id)
    with pytest.raises(ApiError) as missing:
        alice.get_prompt(added.id)
    assert missing.value.status_code == 404 and added.id in missing.value.message


def test_errors_carry_the_status_and_the_servers_message(server: DevServer, alice: Client) -> None:
    with pytest.raises(ApiError) as missing:
        alice.get_prompt("prm_nothing_here")
    assert missing.value.status_code == 404 and "not found" in missing.value.message
    with (
        Client(server.base_url, "psk_unknown_key", server.ws_url) as stranger,
        pytest.raises(ApiError) as refused,
    ):
        stranger.models()
    assert refused.value.status_code == 401 and refused.value.message
    with (
        Client(server.base_url, "psk_unknown_key", server.ws_url) as stranger,
        pytest.raises(ApiError) as refused,
    ):
        next(iter(stranger.stream_thread("any-thread")))
    assert refused.value.status_code == 401


def test_models_and_the_registry(alice: Client) -> None:
    catalog = alice.models()
    assert catalog.default_model_id in {m.id for m in catalog.models}
    created = alice.registry_create(
        {
            "display_name": "Weather",
            "path": "Default/client",
            "prompt": {
                "model": catalog.default_model_id,
                "messages": [{"role": "user", "content": "Hi {{who}}"}],
            },
        }
    )
    assert alice.registry_get(created.id).display_name == "Weather"
    assert created.id in [p.id for p in alice.registry_list()]
    versions = list(alice.registry_versions(created.id))
    assert [v.id for v in versions] == [created.prompt["version"]]


def within(seconds: float, work: Callable[[], None]) -> None:
    """Run `work` in a thread; AssertionError if it has not ended after `seconds` (a bound only)."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as error:
            failure.append(error)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"not done within {seconds} s"
    if failure:
        raise failure[0]


def consistent(events: list[ThreadEvent]) -> None:
    assert [e.seq for e in events] == list(range(events[0].seq, events[0].seq + len(events)))


def test_a_stream_resumes_after_a_dropped_connection_losing_and_repeating_nothing(
    server: DevServer, users: dict[str, str]
) -> None:
    ws_port = urlparse(server.ws_url).port
    assert ws_port is not None
    with (
        TcpProxy(ws_port) as proxy,
        Client(server.base_url, users["alice"], f"ws://127.0.0.1:{proxy.port}/") as c,
    ):
        added = c.add_prompt("Stream me through a flaky network, please.", thread_id="client-drop")
        events: list[ThreadEvent] = []

        def follow() -> None:
            for event in c.stream_thread("client-drop", after=0, until="terminal"):
                events.append(event)
                if len(events) in (2, 4):
                    assert proxy.cut() == 1  # the stream's one connection, dropped between two events

        within(WAIT, follow)  # a stream that lost its closing event would wait for it forever
        stored = list(c.thread_events("client-drop"))
        answer = c.get_prompt(added.id).answer
    assert proxy.connections >= 3  # it reconnected after each drop
    consistent(events)
    assert [e.model_dump() for e in events] == [e.model_dump() for e in stored]  # each event once
    assert events[-1].type == "status" and events[-1].status == "completed"
    text = "".join(e.text or "" for e in events if e.type == "delta")
    assert text == answer_of("Stream me through a flaky network, please.") == answer


def test_until_terminal_ends_at_once_for_a_thread_whose_latest_prompt_is_done(alice: Client) -> None:
    alice.add_prompt("one", thread_id="client-done", sync=True)
    last = alice.add_prompt("two", thread_id="client-done", sync=True)
    events = list(alice.stream_thread("client-done", after=0, until="terminal"))
    consistent(events)
    assert events[0].seq == 1 and (events[-1].prompt_id, events[-1].status) == (last.id, "completed")
    after = events[-1].seq - 2
    assert [e.seq for e in alice.stream_thread("client-done", after=after, until="terminal")] == [
        after + 1,
        after + 2,
    ]


def test_the_async_client(server: DevServer, users: dict[str, str]) -> None:
    async def scenario() -> None:
        async with AsyncClient(server.base_url, users["bob"], server.ws_url) as bob:
            added = await bob.add_prompt("Async banana", thread_id="client-async")
            events = [e async for e in bob.stream_thread("client-async", until="terminal")]
            consistent(events)
            assert "".join(e.text or "" for e in events if e.type == "delta") == answer_of("Async banana")
            got = await bob.get_prompt(added.id)
            assert (got.status, got.answer) == ("completed", answer_of("Async banana"))
            assert [p.id async for p in bob.list_prompts(thread_id="client-async", page_size=1)] == [added.id]
            assert (
                await bob.cancel_prompt((await bob.add_prompt("x", thread_id="client-async")).id)
            ).terminal
            with pytest.raises(ApiError) as missing:
                await bob.get_prompt("prm_nothing_here")
            assert missing.value.status_code == 404

    asyncio.run(asyncio.wait_for(scenario(), WAIT))


def test_the_sdk_runs_without_the_servers_dependencies(server: DevServer) -> None:
    run = run_without_server_deps(
        """
        from promptsvc.client import AsyncClient, Client
        with Client() as client:
            prompt = client.add_prompt("No boto3 here", sync=True)
            events = list(client.stream_thread(prompt.thread_id, until="terminal"))
        print(prompt.status, prompt.answer, events[-1].status, sep="|")
        """,
        {"PROMPTSVC_URL": server.base_url, "PROMPTSVC_API_KEY": ADMIN_KEY, "PROMPTSVC_WS_URL": server.ws_url},
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().split("|") == ["completed", answer_of("No boto3 here"), "completed"]


def test_the_blocker_blocks(server: DevServer) -> None:
    """The test above would prove nothing if the server's dependencies could still be imported."""
    run = run_without_server_deps("import boto3", {})
    assert run.returncode != 0 and "server dependency: blocked" in run.stderr


# -- retries, against a server that answers what the rule is about --------------------------------


class Scripted(BaseHTTPRequestHandler):
    """Answers each request with the next of `answers` (status, headers), then 200 with `body`."""

    answers: ClassVar[list[tuple[int, dict[str, str]]]] = []
    body = b"{}"
    seen: ClassVar[list[str]] = []

    def _answer(self) -> None:
        self.seen.append(f"{self.command} {self.path}")
        status, headers = self.answers.pop(0) if self.answers else (200, {})
        body = self.body if status == 200 else json.dumps({"error": f"scripted {status}"}).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Client, type[Scripted], list[float]]]:
    handler = type("Handler", (Scripted,), {"answers": [], "seen": []})
    handler.body = json.dumps({"defaultModelId": "m", "models": [{"id": "m"}]}).encode()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    waits: list[float] = []
    monkeypatch.setattr(sync_client, "_sleep", waits.append)  # see the waits, do not wait
    try:
        with Client(f"http://127.0.0.1:{httpd.server_port}", "key") as client:
            yield client, handler, waits
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_429_is_retried_after_the_retry_after_it_names(
    scripted: tuple[Client, type[Scripted], list[float]],
) -> None:
    client, handler, waits = scripted
    handler.answers = [(429, {"Retry-After": "3"}), (503, {"Retry-After": "1"})]
    assert client.models().default_model_id == "m"
    assert handler.seen == ["GET /prompt-svc/models"] * 3 and waits == [3.0, 1.0]


def test_retries_are_bounded(scripted: tuple[Client, type[Scripted], list[float]]) -> None:
    client, handler, waits = scripted
    handler.answers = [(503, {})] * 10
    with pytest.raises(ApiError) as failed:
        client.models()
    assert failed.value.status_code == 503 and failed.value.message == "scripted 503"
    assert len(handler.seen) == client.retry.max_retries + 1 and len(waits) == client.retry.max_retries


def test_a_500_is_retried_only_where_a_repeat_is_safe(
    scripted: tuple[Client, type[Scripted], list[float]],
) -> None:
    client, handler, _ = scripted
    handler.answers = [(500, {})]
    with pytest.raises(ApiError):
        client.cancel_prompt("prm_x")  # a repeat of a cancel that took effect would be a 409
    assert handler.seen == ["POST /prompt-svc/prompt/prm_x/cancel"]
    handler.answers, handler.seen[:] = [(500, {}), (502, {})], []
    assert client.models().default_model_id == "m"  # a read: safe
    assert len(handler.seen) == 3
