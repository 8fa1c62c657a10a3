"""The ECS worker's parts: engine slots with runs claimed ahead of them, and batched deletes."""

import asyncio
from typing import Any, cast

import pytest
from promptsvc.adapters.prompt_queue import SqsMessages
from promptsvc.consumer.engine_slots import EngineSlots
from promptsvc.consumer.message_deletes import MessageDeletes


def test_runs_claimed_ahead_take_freed_slots_in_turn_and_a_stop_cancels_the_waiting() -> None:
    async def scenario() -> tuple[list[str], int, bool]:
        slots = EngineSlots(concurrency=2, ahead=1)
        first, second, third = slots.run(), slots.run(), slots.run()
        assert slots.room() == 0  # two slots and one ahead
        order: list[str] = []

        async def generate(name: str, use: Any) -> None:
            await use.take()
            order.append(name)

        running = [
            asyncio.create_task(generate(n, u)) for n, u in (("1", first), ("2", second), ("3", third))
        ]
        await asyncio.sleep(0.01)
        waiting_before = order.copy()
        first.done()  # the engine is done with the first: the one claimed ahead takes its slot
        await asyncio.sleep(0.01)
        late = slots.run()
        waiter = asyncio.create_task(generate("4", late))
        await asyncio.sleep(0.01)
        slots.close()  # stopping: the run still waiting gets no slot
        await asyncio.gather(*running)
        with pytest.raises(asyncio.CancelledError):
            await waiter
        return [*waiting_before, "|", *order], slots.peak, late._closed

    order, peak, closed = asyncio.run(scenario())

    assert order == ["1", "2", "|", "1", "2", "3"]
    assert peak == 2 and closed


def test_a_run_that_never_needed_a_slot_frees_its_place() -> None:
    async def scenario() -> int:
        slots = EngineSlots(concurrency=1, ahead=1)
        use = slots.run()
        use.done()  # e.g. its claim found the prompt finished
        use.done()  # idempotent
        return slots.room()

    assert asyncio.run(scenario()) == 2


class Messages:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def delete_many(self, receipt_handles: list[str]) -> list[str]:
        self.batches.append(list(receipt_handles))
        return []


def test_settled_messages_are_deleted_ten_to_a_call_and_what_is_left_on_close() -> None:
    messages = Messages()

    async def scenario() -> None:
        deletes = MessageDeletes(cast(SqsMessages, messages), linger=30)  # only a full batch or close
        for n in range(13):
            deletes.delete(f"h{n}")
        await asyncio.sleep(0.05)
        await deletes.close()

    asyncio.run(scenario())

    assert [len(batch) for batch in messages.batches] == [10, 3]
    assert [handle for batch in messages.batches for handle in batch] == [f"h{n}" for n in range(13)]
