"""Copies of a finished prompt's message that find its closing event missing (its consumer died
between the two writes of the finish) repair it once between them: the chaos run's duplicate
deliveries did race here, and stored two `completed` events."""

import asyncio
import time

import pytest
from fastapi.testclient import TestClient
from promptsvc import wiring
from promptsvc.adapters.thread_event_table import DynamoThreadEventLog
from promptsvc.consumer import closing_events, endings
from promptsvc.consumer.runner import Outcome, PromptRunner
from promptsvc.domain.clock import now_rfc3339
from promptsvc.domain.names import scoped
from promptsvc.domain.thread_events import CLOSE_GRACE_SECONDS, EventType, ThreadEvent
from promptsvc.engines.registry import EngineRegistry
from promptsvc.settings import Settings

from tests.integration.helpers import add
from tests.integration.test_thread_events import die_between_finish_and_closing, events, streaming


def test_copies_of_a_message_racing_to_repair_a_closing_event_store_one(
    client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    prompt = add(client, keys["alice"], threadId="raced")
    engines = streaming(["the ", "answer"])
    store = wiring.prompt_store(settings)
    catalog = wiring.catalog_source(settings).get
    die_between_finish_and_closing(settings, engines, prompt["id"])
    later = time.time() + CLOSE_GRACE_SECONDS + 1

    def copy() -> PromptRunner:
        log = DynamoThreadEventLog(settings.thread_events_table)
        return PromptRunner(
            store, catalog, EngineRegistry(settings.engines, engines), events=log, clock=lambda: later
        )

    async def both() -> list[Outcome]:
        results = await asyncio.gather(*(copy().run(prompt["id"], user_id="alice") for _ in range(2)))
        return sorted(result.outcome for result in results)

    outcomes = asyncio.run(both())

    # One repaired (skipped: nothing left to run); the other either found the repair under way and
    # looks again later (busy), or came after it and found the closing event there (skipped).
    assert outcomes in (sorted([Outcome.BUSY, Outcome.SKIPPED]), [Outcome.SKIPPED, Outcome.SKIPPED])
    statuses = [e.get("status") for e in events(client, keys["alice"], "raced") if e["type"] == "status"]
    assert statuses == ["scheduled", "running", "completed"]
    again = asyncio.run(copy().run(prompt["id"], user_id="alice"))
    assert again.outcome is Outcome.SKIPPED  # the repair is there: nothing more to do
    statuses = [e.get("status") for e in events(client, keys["alice"], "raced") if e["type"] == "status"]
    assert statuses == ["scheduled", "running", "completed"]


def test_a_closing_event_that_misses_the_finished_runs_fence_is_repaired_from_the_kept_message(
    client: TestClient, keys: dict[str, str], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run that finished the prompt starts its closing event's write too late (here: its fence
    is already past): it stores none, and keeps the message instead of letting it go, so the
    message comes back and its repair stores the event, once."""
    monkeypatch.setattr(endings, "CLOSING_WRITE_SECONDS", -60.0)
    prompt = add(client, keys["alice"], threadId="late")
    engines = streaming(["the ", "answer"])
    store = wiring.prompt_store(settings)
    catalog = wiring.catalog_source(settings).get
    log = DynamoThreadEventLog(settings.thread_events_table)
    finishing = PromptRunner(store, catalog, EngineRegistry(settings.engines, engines), events=log)

    finished = asyncio.run(finishing.run(prompt["id"], user_id="alice"))

    assert finished.outcome is Outcome.BUSY and finished.keep_message  # the message comes back
    statuses = [e.get("status") for e in events(client, keys["alice"], "late") if e["type"] == "status"]
    assert statuses == ["scheduled", "running"]
    later = time.time() + CLOSE_GRACE_SECONDS + 1
    back = PromptRunner(
        store, catalog, EngineRegistry(settings.engines, engines), events=log, clock=lambda: later
    )
    assert asyncio.run(back.run(prompt["id"], user_id="alice")).outcome is Outcome.SKIPPED
    statuses = [e.get("status") for e in events(client, keys["alice"], "late") if e["type"] == "status"]
    assert statuses == ["scheduled", "running", "completed"]


def finished_under_later_events(
    client: TestClient, keys: dict[str, str], settings: Settings, thread: str
) -> tuple[str, DynamoThreadEventLog, PromptRunner]:
    """A prompt finished without its closing event, then 250 events of other prompts on its thread,
    stamped no earlier than the finish; and a runner past the grace to repair it."""
    prompt = add(client, keys["alice"], threadId=thread)
    engines = streaming(["the ", "answer"])
    store = wiring.prompt_store(settings)
    catalog = wiring.catalog_source(settings).get
    die_between_finish_and_closing(settings, engines, prompt["id"])
    log = DynamoThreadEventLog(settings.thread_events_table)
    for batch in range(5):
        log.append_many(
            [
                ThreadEvent(thread, "alice", f"other-{batch}-{n}", EventType.DELTA, now_rfc3339(), text="x")
                for n in range(50)
            ]
        )
    later = time.time() + CLOSE_GRACE_SECONDS + 1
    repairing = PromptRunner(
        store, catalog, EngineRegistry(settings.engines, engines), events=log, clock=lambda: later
    )
    return prompt["id"], log, repairing


def test_a_closing_event_missing_under_pages_of_later_events_is_found_missing_and_repaired(
    client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    """A busy thread: the repair reads back page by page to the finish, not only the latest events
    (where it could not tell, and left the thread without the event)."""
    prompt_id, log, repairing = finished_under_later_events(client, keys, settings, "busy-repair")

    assert asyncio.run(repairing.run(prompt_id, user_id="alice")).outcome is Outcome.SKIPPED

    stored = log.after(scoped("alice", "busy-repair"), 0, 1000)
    mine = [e.status for e in stored if e.promptId == prompt_id and e.type == EventType.STATUS]
    assert mine == ["scheduled", "running", "completed"]
    assert stored[-1].promptId == prompt_id  # the repair's event, after the others
    again = asyncio.run(repairing.run(prompt_id, user_id="alice"))
    assert again.outcome is Outcome.SKIPPED  # found now, pages back: not stored twice
    assert len(log.after(scoped("alice", "busy-repair"), 0, 1000)) == len(stored)


def test_a_finish_deeper_than_the_repairs_pages_is_left_without_a_second_closing_event(
    client: TestClient, keys: dict[str, str], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past REPAIR_PAGES pages the repair cannot tell whether the closing event is there: it stores
    none (a second closing event is worse than none) and lets the message go."""
    monkeypatch.setattr(closing_events, "REPAIR_PAGES", 2)  # 200 events back; the finish is 250 back
    prompt_id, log, repairing = finished_under_later_events(client, keys, settings, "too-deep")

    assert asyncio.run(repairing.run(prompt_id, user_id="alice")).outcome is Outcome.SKIPPED

    stored = log.after(scoped("alice", "too-deep"), 0, 1000)
    mine = [e.status for e in stored if e.promptId == prompt_id and e.type == EventType.STATUS]
    assert mine == ["scheduled", "running"]  # no closing event: not found, and not guessed
    assert len(stored) == 2 + 1 + 250  # its start, its delta, the others: nothing added
