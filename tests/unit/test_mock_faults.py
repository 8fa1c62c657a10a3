"""The mock engine's fault knobs: deterministic per seed, prompt and attempt, failing with the
engine errors real engines raise, and recording what each attempt produced."""

import asyncio

import pytest
from msgspec.structs import replace
from promptsvc.domain.catalog import Model
from promptsvc.engines import mock
from promptsvc.engines.base import Delta, EngineError, EngineRequest, Finish
from promptsvc.engines.mock import ConsumerKilled, Fault, MockEngine, MockFaults, prompt_key

MODEL = Model("m", "m", "{prompt}", "mock", stall_timeout=0.2)
FAULTS = MockFaults(seed=5, error_rate=0.25, stall_rate=0.1, cut_rate=0.25, kill_rate=0.1, error_codes=(503,))


def prompt_with(fault: Fault, attempt: int = 1) -> str:
    """A prompt whose `attempt`-th stream gets `fault` under FAULTS."""
    for n in range(10_000):
        text = f"prompt {n} with a few words to chunk"
        if FAULTS.plan(prompt_key(text), attempt, 4).fault is fault:
            return text
    raise AssertionError(f"no prompt gets {fault}")


async def drain(engine: MockEngine, text: str) -> list[object]:
    events: list[object] = []
    async with asyncio.timeout(2):
        async for event in engine.stream(EngineRequest(model=MODEL, prompt=text)):
            events.append(event)
    return events


def last_attempt(text: str) -> mock.Attempt:
    return [a for a in mock.attempts() if a.key == prompt_key(text)][-1]


def test_the_same_seed_prompt_and_attempt_get_the_same_fault() -> None:
    plans = [FAULTS.plan(prompt_key(f"p{n}"), attempt, 4) for n in range(200) for attempt in (1, 2)]
    again = [FAULTS.plan(prompt_key(f"p{n}"), attempt, 4) for n in range(200) for attempt in (1, 2)]
    other_seed = replace(FAULTS, seed=6)
    reseeded = [other_seed.plan(prompt_key(f"p{n}"), attempt, 4) for n in range(200) for attempt in (1, 2)]
    assert plans == again
    assert plans != reseeded
    assert {p.fault for p in plans} == set(Fault)


def test_a_clean_attempt_echoes_the_prompt_and_is_recorded_finished() -> None:
    text = prompt_with(Fault.NONE)
    events = asyncio.run(drain(MockEngine(faults=FAULTS), text))
    assert "".join(e.text for e in events if isinstance(e, Delta)) == text
    assert isinstance(events[-1], Finish)
    recorded = last_attempt(text)
    assert (recorded.produced, recorded.finished, recorded.fault) == (text, True, "none")


def test_an_error_fault_raises_a_retryable_engine_error_with_its_status() -> None:
    text = prompt_with(Fault.ERROR)
    with pytest.raises(EngineError) as raised:
        asyncio.run(drain(MockEngine(faults=FAULTS), text))
    assert (raised.value.status_code, raised.value.retryable) == (503, True)
    assert last_attempt(text).produced == ""


def test_a_cut_stream_fails_as_a_broken_connection_after_some_deltas() -> None:
    text = prompt_with(Fault.CUT)
    engine = MockEngine(faults=FAULTS)
    seen: list[str] = []

    async def consume() -> None:
        async for event in engine.stream(EngineRequest(model=MODEL, prompt=text)):
            if isinstance(event, Delta):
                seen.append(event.text)

    with pytest.raises(EngineError) as raised:
        asyncio.run(consume())
    assert raised.value.retryable and raised.value.status_code is None
    recorded = last_attempt(text)
    assert seen and recorded.produced == "".join(seen) and not recorded.finished
    assert text.startswith(recorded.produced) and recorded.produced != text


def test_a_kill_is_not_an_exception_the_runner_could_catch() -> None:
    text = prompt_with(Fault.KILL)
    assert not issubclass(ConsumerKilled, Exception)
    with pytest.raises(ConsumerKilled):
        asyncio.run(drain(MockEngine(faults=FAULTS), text))


def test_a_stall_outlasts_the_stall_timeout() -> None:
    text = prompt_with(Fault.STALL)

    async def first_gap() -> None:
        stream = MockEngine(faults=FAULTS).stream(EngineRequest(model=MODEL, prompt=text))
        while True:
            await asyncio.wait_for(anext(stream), MODEL.stall_timeout)

    with pytest.raises(TimeoutError):
        asyncio.run(first_gap())


def test_the_attempt_number_counts_streams_of_the_same_prompt() -> None:
    text = "a prompt streamed twice"
    engine = MockEngine(faults=MockFaults(log_file=""), chunks=2)
    engine_logged = MockEngine(faults=MockFaults(slow_first_token_rate=1.0, slow_first_token_seconds=0.01))
    asyncio.run(drain(engine_logged, text))
    asyncio.run(drain(engine_logged, text))
    asyncio.run(drain(engine, text))  # faults off, no log: not recorded
    assert [a.attempt for a in mock.attempts() if a.key == prompt_key(text)] == [1, 2]
