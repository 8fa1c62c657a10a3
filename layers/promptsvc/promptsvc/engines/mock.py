"""The mock engine, for `promptsvc dev` and tests: echoes the rendered prompt back in chunks.

Fault knobs (`MockFaults`, all off by default; `MOCK_*` settings) make it fail the way real engines
do, with the same `EngineError`s: an error status, a stall (no chunk past the model's stall
timeout), a stream cut midway (a broken connection after some deltas), a slow first token, and
the consumer process killed mid-prompt (`ConsumerKilled`). Which fault an attempt gets is drawn
from a hash of the seed, the rendered prompt and the attempt number (how many times this process
has streamed that prompt), so a seeded run replays. With faults on (or `log_file` set) every
attempt is recorded: what it produced and whether it finished, so a checker can compare a stored
answer with the engine's last attempt (`attempts()`, and one JSON line per attempt in `log_file`).
"""

import asyncio
import contextlib
import hashlib
import json
import random
import threading
from collections.abc import AsyncGenerator, AsyncIterator
from enum import StrEnum

import msgspec

from promptsvc.engines.base import Delta, EngineError, EngineEvent, EngineRequest, Finish


class ConsumerKilled(BaseException):
    """The consumer dies here. Not an `Exception`: nothing in the runner catches it, as nothing of a
    killed process runs on; the local SQS event source settles nothing of the invocation."""


class Fault(StrEnum):
    NONE = "none"
    ERROR = "error"
    STALL = "stall"
    CUT = "cut"
    KILL = "kill"


class FaultPlan(msgspec.Struct, frozen=True):
    fault: Fault = Fault.NONE
    at: int = 0  # the chunk before which a stall, cut or kill happens
    status_code: int = 0  # of an error
    slow_first_token: bool = False


class MockFaults(msgspec.Struct, frozen=True):
    seed: int = 0
    error_rate: float = 0.0
    error_codes: tuple[int, ...] = (500, 502, 503, 429)
    stall_rate: float = 0.0
    cut_rate: float = 0.0
    kill_rate: float = 0.0
    slow_first_token_rate: float = 0.0
    slow_first_token_seconds: float = 0.0  # 0: half the model's stall timeout
    log_file: str = ""

    @property
    def active(self) -> bool:
        rates = (self.error_rate, self.stall_rate, self.cut_rate, self.kill_rate, self.slow_first_token_rate)
        return any(rate > 0 for rate in rates)

    def plan(self, key: str, attempt: int, chunks: int) -> FaultPlan:
        """The attempt's fault: the same for the same seed, prompt and attempt number."""
        rng = random.Random(f"{self.seed}:{attempt}:{key}")
        roll, slow = rng.random(), rng.random() < self.slow_first_token_rate
        middle = rng.randint(1, chunks - 1) if chunks > 1 else 0
        for fault, rate in (
            (Fault.ERROR, self.error_rate),
            (Fault.STALL, self.stall_rate),
            (Fault.CUT, self.cut_rate),
            (Fault.KILL, self.kill_rate),
        ):
            if roll < rate:
                code = rng.choice(self.error_codes) if fault is Fault.ERROR and self.error_codes else 500
                at = rng.randint(0, chunks - 1) if fault is Fault.STALL else middle
                return FaultPlan(fault, at, code, slow)
            roll -= rate
        return FaultPlan(slow_first_token=slow)


class Attempt(msgspec.Struct, frozen=True):
    """One stream of one rendered prompt, as the engine saw it end."""

    key: str  # prompt_key(rendered prompt)
    attempt: int  # 1, 2, ... per key in this process
    fault: str
    produced: str  # the text it yielded
    finished: bool  # it yielded its Finish: a whole answer
    error: str = ""


def usage_of(rendered: str, pieces: list[str]) -> tuple[int, int]:
    """The (prompt, completion) tokens the mock reports: a token per word of the rendered prompt,
    one per non-empty chunk of its answer."""
    return len(rendered.split()), sum(1 for piece in pieces if piece)


def prompt_key(rendered: str) -> str:
    return hashlib.sha256(rendered.encode("utf-8", "surrogatepass")).hexdigest()[:32]


# Process-wide: a dev stack runs several consumer handlers, each with its own engine instance.
_lock = threading.Lock()
_counts: dict[str, int] = {}
_attempts: list[Attempt] = []


def attempts() -> list[Attempt]:
    with _lock:
        return list(_attempts)


def _next_attempt(key: str) -> int:
    with _lock:
        _counts[key] = _counts.get(key, 0) + 1
        return _counts[key]


def _record(attempt: Attempt, log_file: str) -> None:
    with _lock:
        _attempts.append(attempt)
        if log_file:
            with open(log_file, "a", encoding="utf-8") as out:
                out.write(json.dumps(msgspec.structs.asdict(attempt)) + "\n")


class MockEngine:
    def __init__(
        self,
        *,
        chunks: int = 4,
        chunk_delay: float = 0.0,
        max_chars: int = 8192,
        faults: MockFaults | None = None,
    ) -> None:
        self._chunks = chunks
        self._delay = chunk_delay
        self._max_chars = max_chars
        self._faults = faults or MockFaults()

    async def stream(self, request: EngineRequest) -> AsyncIterator[EngineEvent]:
        text = request.prompt[: self._max_chars]
        size = max(1, -(-len(text) // self._chunks))
        pieces = [text[i : i + size] for i in range(0, len(text), size)] or [""]
        # Usage as a server reports it: a token per word of the prompt, and one per chunk streamed
        # (`usage_of`), so tests can check exact sums.
        finish = Finish("stop", *usage_of(request.prompt, pieces))
        if not (self._faults.active or self._faults.log_file):
            for piece in pieces:
                if self._delay:
                    await asyncio.sleep(self._delay)
                yield Delta(piece)
            yield finish
            return
        async with contextlib.aclosing(self._faulty(request, pieces, finish)) as events:
            async for event in events:
                yield event

    async def _faulty(
        self, request: EngineRequest, pieces: list[str], finish: Finish
    ) -> AsyncGenerator[EngineEvent, None]:
        key = prompt_key(request.prompt)
        number = _next_attempt(key)
        plan = self._faults.plan(key, number, len(pieces))
        produced: list[str] = []
        finished = False
        error = "stopped by the consumer"  # closed or canceled before the end (a cancel, a timeout)
        try:
            if plan.slow_first_token:
                await asyncio.sleep(self._faults.slow_first_token_seconds or request.model.stall_timeout / 2)
            if plan.fault is Fault.ERROR:
                raise EngineError.from_status(
                    plan.status_code, f"mock engine: injected {plan.status_code} (attempt {number})"
                )
            for index, piece in enumerate(pieces):
                if index == plan.at:
                    await self._fault_at(plan, number, index, request)
                if self._delay:
                    await asyncio.sleep(self._delay)
                produced.append(piece)
                yield Delta(piece)
            finished, error = True, ""
            yield finish
        except EngineError as failure:
            error = str(failure)
            raise
        except ConsumerKilled as killed:
            error = str(killed)
            raise
        finally:
            attempt = Attempt(key, number, str(plan.fault), "".join(produced), finished, error)
            _record(attempt, self._faults.log_file)

    @staticmethod
    async def _fault_at(plan: FaultPlan, number: int, index: int, request: EngineRequest) -> None:
        if plan.fault is Fault.STALL:
            # Past the stall timeout the runner gives up and closes this stream.
            await asyncio.sleep(request.model.stall_timeout * 2 + 1)
        elif plan.fault is Fault.CUT:
            # What the OpenAI engine raises for a broken stream (no status: counts as 502).
            raise EngineError(
                f"mock engine: stream broke after {index} chunks (attempt {number}): connection reset",
                retryable=True,
            )
        elif plan.fault is Fault.KILL:
            raise ConsumerKilled(f"mock engine: consumer killed after {index} chunks (attempt {number})")
