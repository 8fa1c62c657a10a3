"""A simulated continuous-batching LLM engine with an OpenAI-compatible streaming HTTP API.

Run as its own process by `benchmarks/consumer_efficiency.py` (so its event loop never competes for
the GIL with the code under test)::

    python benchmarks/sim_engine.py --a-ms 15 --b-ms 0.5

It binds a free port on 127.0.0.1, prints `port <n>` on stdout, and serves until SIGTERM/SIGINT or
until its stdin closes (the parent is gone).

The engine: one scheduler loop. Every step it sleeps `a + b * batch` ms (`batch`: the sequences
active in that step) and then emits one token to every active sequence. Requests that arrive during
a step join at the next one; a sequence leaves once it has `max_tokens` tokens (from the request),
or when its client hangs up. So throughput grows with the batch, as on a GPU, and only a client that
keeps the batch full gets it.

Endpoints: `POST /v1/chat/completions` and `POST /v1/completions` (streamed as Server-Sent Events
with OpenAI's chunk shapes, a `finish_reason: "length"` chunk, a usage chunk when
`stream_options.include_usage`, then `data: [DONE]`; or one JSON body when `stream` is false), and
`GET /stats`: the scheduler's cumulative counters (steps, tokens, requests, ...), which a benchmark
reads before and after a phase.
"""

import argparse
import asyncio
import contextlib
import itertools
import json
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

TOKEN = "tok "
DEFAULT_MAX_TOKENS = 16


@dataclass
class Sequence:
    """One request being generated; `tokens` receives the running token count after each step."""

    max_tokens: int
    tokens: asyncio.Queue[int] = field(default_factory=asyncio.Queue)
    emitted: int = 0
    closed: bool = False  # the client hung up: leave the batch at the next step


@dataclass
class Stats:
    """Cumulative counters; a phase's figures are the difference of two snapshots."""

    steps: int = 0
    tokens: int = 0  # tokens emitted; also the sum over steps of the batch size
    requests: int = 0  # sequences submitted
    finished: int = 0  # sequences that reached max_tokens
    disconnected: int = 0  # sequences whose client hung up first
    max_batch: int = 0
    step_seconds: float = 0.0  # wall time spent in steps (the engine was busy)
    nominal_seconds: float = 0.0  # sum of a + b * batch: what the steps should have taken
    slot_seconds: float = 0.0  # sum of batch x step time: the time sequences spent being generated


class Scheduler:
    def __init__(self, a_ms: float, b_ms: float) -> None:
        self.a = a_ms / 1000
        self.b = b_ms / 1000
        self.stats = Stats()
        self._waiting: list[Sequence] = []
        self._active: list[Sequence] = []
        self._wakeup = asyncio.Event()

    def submit(self, sequence: Sequence) -> None:
        self.stats.requests += 1
        self._waiting.append(sequence)
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            self._active.extend(self._waiting)  # what arrived during the last step joins this one
            self._waiting.clear()
            self._drop_closed()
            batch = len(self._active)
            if not batch:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            nominal = self.a + self.b * batch
            started = time.perf_counter()
            await asyncio.sleep(nominal)
            for sequence in self._active:
                sequence.emitted += 1
                sequence.tokens.put_nowait(sequence.emitted)
            stats = self.stats
            stats.steps += 1
            stats.tokens += batch
            stats.max_batch = max(stats.max_batch, batch)
            stats.nominal_seconds += nominal
            elapsed = time.perf_counter() - started
            stats.step_seconds += elapsed
            stats.slot_seconds += batch * elapsed
            still = [s for s in self._active if s.emitted < s.max_tokens]
            stats.finished += batch - len(still)
            self._active = still

    def _drop_closed(self) -> None:
        closed = [s for s in self._active if s.closed]
        if closed:
            self.stats.disconnected += len(closed)
            self._active = [s for s in self._active if not s.closed]


class Engine:
    """The Starlette app around one scheduler."""

    def __init__(self, a_ms: float, b_ms: float) -> None:
        self.a_ms, self.b_ms = a_ms, b_ms
        self.scheduler: Scheduler | None = None
        self._ids = itertools.count(1)
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._completions, methods=["POST"]),
                Route("/v1/completions", self._completions, methods=["POST"]),
                Route("/stats", self._stats, methods=["GET"]),
            ],
            lifespan=self._lifespan,
        )

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.scheduler = Scheduler(self.a_ms, self.b_ms)
        task = asyncio.create_task(self.scheduler.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _stats(self, request: Request) -> Response:
        assert self.scheduler is not None
        return JSONResponse({**asdict(self.scheduler.stats), "a_ms": self.a_ms, "b_ms": self.b_ms})

    async def _completions(self, request: Request) -> Response:
        assert self.scheduler is not None
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        chat = request.url.path.endswith("/chat/completions")
        needed = "messages" if chat else "prompt"
        if not isinstance(body, dict) or not isinstance(body.get("model"), str) or needed not in body:
            message = f"'model' and '{needed}' are required."
            error = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
            return JSONResponse({"error": error}, status_code=400)
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or DEFAULT_MAX_TOKENS)
        sequence = Sequence(max_tokens=max(1, max_tokens))
        self.scheduler.submit(sequence)
        stream = _Stream(
            chat=chat,
            chunk_id=f"{'chatcmpl' if chat else 'cmpl'}-sim{next(self._ids)}",
            model=body["model"],
            prompt_tokens=_prompt_tokens(body, chat),
            include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
        )
        if body.get("stream"):
            return StreamingResponse(
                stream.events(sequence), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
            )
        try:
            while sequence.emitted < sequence.max_tokens:
                await sequence.tokens.get()
        finally:
            sequence.closed = True
        return JSONResponse(stream.full_response(sequence.max_tokens))


@dataclass
class _Stream:
    """The chunks of one response, shaped as OpenAI's."""

    chat: bool
    chunk_id: str
    model: str
    prompt_tokens: int
    include_usage: bool
    created: int = field(default_factory=lambda: int(time.time()))

    async def events(self, sequence: Sequence) -> AsyncIterator[bytes]:
        try:
            if self.chat:
                yield self._chunk([self._choice("", role=True)])
            sent = 0
            while sent < sequence.max_tokens:
                count = await sequence.tokens.get()
                while sent < count:
                    sent += 1
                    yield self._chunk([self._choice(TOKEN)])
            yield self._chunk([self._choice("", finish_reason="length")])
            if self.include_usage:
                yield self._chunk([], usage=self._usage(sent))
            yield b"data: [DONE]\n\n"
        finally:
            sequence.closed = True

    def full_response(self, completion_tokens: int) -> dict[str, Any]:
        text = TOKEN * completion_tokens
        choice: dict[str, Any] = (
            {"index": 0, "message": {"role": "assistant", "content": text}}
            if self.chat
            else {"index": 0, "text": text}
        )
        return {
            "id": self.chunk_id,
            "object": "chat.completion" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [{**choice, "logprobs": None, "finish_reason": "length"}],
            "usage": self._usage(completion_tokens),
        }

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        chunk = {
            "id": self.chunk_id,
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            **({"usage": None} if self.include_usage else {}),
            **extra,
        }
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"

    def _choice(self, text: str, *, finish_reason: str | None = None, role: bool = False) -> dict[str, Any]:
        if not self.chat:
            return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
        delta = {"role": "assistant", "content": text} if role else ({"content": text} if text else {})
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

    def _usage(self, completion_tokens: int) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
        }


def _prompt_tokens(body: dict[str, Any], chat: bool) -> int:
    """A stand-in for a tokenizer: the words of the prompt, or of the messages' contents."""
    if chat:
        messages = body.get("messages") or []
        return sum(len(str(m.get("content", "")).split()) for m in messages if isinstance(m, dict))
    return len(str(body.get("prompt", "")).split())


def _exit_when_stdin_closes(server: uvicorn.Server) -> None:
    """The parent holds our stdin open: EOF means it is gone, so stop rather than linger."""
    with contextlib.suppress(Exception):
        sys.stdin.buffer.read()
    server.should_exit = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a-ms", type=float, default=15.0, help="fixed cost of a decode step (ms)")
    parser.add_argument("--b-ms", type=float, default=0.5, help="cost per sequence in the batch (ms)")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    args = parser.parse_args(argv)

    engine = Engine(args.a_ms, args.b_ms)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    config = uvicorn.Config(
        engine.app,
        http="h11",
        loop="asyncio",
        lifespan="on",
        log_config=None,
        log_level="warning",
        access_log=False,
        backlog=1024,
    )
    server = uvicorn.Server(config)
    threading.Thread(target=_exit_when_stdin_closes, args=(server,), daemon=True).start()
    print(f"port {sock.getsockname()[1]}", flush=True)
    server.run(sockets=[sock])
    sock.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
