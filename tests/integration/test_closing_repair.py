"""Copies of a finished prompt's message that find its closing event missing (its consumer died
between the two writes of the finish) repair it once between them: the chaos run's duplicate
deliveries did race here, and stored two `completed` events."""

import asyncio
import time

import pytest
from fastapi.testclient import TestClient
from promptsvc import wiring
from promptsvc.adapters.thread_event_table import DynamoThreadEventLog
from promptsvc.consumer.runner import Outcome, PromptRunner
from promptsvc.domain.thread_events import CLOSE_GRACE_SECONDS
from promptsvc.engines import mock
from promptsvc.engines.registry import EngineRegistry
from promptsvc.settings import Settings

from tests.integration.helpers import add
from tests.integration.test_thread_events import DiesBeforeClosing, events, streaming


def test_copies_of_a_message_racing_to_repair_a_closing_event_store_one(
    client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    prompt = add(client, keys["alice"], threadId="raced")
    engines = streaming(["the ", "answer"])
    store = wiring.prompt_store(settings)
    catalog = wiring.catalog_source(settings).get
    dying = PromptRunner(
        store,
        catalog,
        EngineRegistry(settings.engines, engines),
        events=DiesBeforeClosing(settings.thread_events_table),
    )
    with pytest.raises(mock.ConsumerKilled):
        asyncio.run(dying.run(prompt["id"], user_id="alice"))
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

    assert outcomes == sorted([Outcome.BUSY, Outcome.SKIPPED])  # one repaired; one looks again later
    statuses = [e.get("status") for e in events(client, keys["alice"], "raced") if e["type"] == "status"]
    assert statuses == ["scheduled", "running", "completed"]
    again = asyncio.run(copy().run(prompt["id"], user_id="alice"))
    assert again.outcome is Outcome.SKIPPED  # the repair is there: nothing more to do
    statuses = [e.get("status") for e in events(client, keys["alice"], "raced") if e["type"] == "status"]
    assert statuses == ["scheduled", "running", "completed"]
