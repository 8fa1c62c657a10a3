"""The thread stream's bookkeeping (promptsvc.client.stream): order, repeats, split frames, the end."""

import json

import pytest
from promptsvc.client import StreamError, ThreadEvent
from promptsvc.client.stream import MAX_RECONNECTS, Ending, Gap, Reconnects, ThreadCursor


def frame(seq: int, type: str = "delta", **fields: object) -> dict[str, object]:
    return {"seq": seq, "threadId": "t", "promptId": "p", "type": type, "createdAt": "", **fields}


def test_subscribe_asks_for_the_events_after_the_cursor() -> None:
    assert json.loads(ThreadCursor("t", 0).subscribe_message()) == {
        "action": "subscribe",
        "threadId": "t",
        "after": 0,
    }
    assert "after" not in json.loads(ThreadCursor("t", None).subscribe_message())  # live only
    cursor = ThreadCursor("t", 3, user_id="alice")
    cursor.accept(frame(4))
    assert json.loads(cursor.subscribe_message()) == {
        "action": "subscribe", "threadId": "t", "after": 4, "userId": "alice",
    }  # fmt: skip


def test_events_come_in_order_and_a_replayed_one_is_dropped() -> None:
    cursor = ThreadCursor("t", 0)
    assert cursor.accept({"type": "subscribed", "threadId": "t", "after": 0}) is None
    first = cursor.accept(frame(1, "status", status="running"))
    assert isinstance(first, ThreadEvent) and (first.seq, first.status, first.prompt_id) == (
        1,
        "running",
        "p",
    )
    assert cursor.accept(frame(2, text="Ba")) is not None
    assert cursor.accept(frame(2, text="Ba")) is None  # a resubscription replayed it
    assert cursor.accept(frame(1, "status", status="running")) is None
    assert cursor.accept(frame(3, text="na", threadId="another")) is None  # another subscription's
    assert cursor.after == 2


def test_a_skipped_seq_is_a_gap_to_resubscribe_over() -> None:
    cursor = ThreadCursor("t", 5)
    with pytest.raises(Gap):
        cursor.accept(frame(7))
    assert cursor.after == 5  # resubscribe after 5: seq 6 comes again


def test_live_only_starts_at_the_first_event_seen() -> None:
    cursor = ThreadCursor("t", None)
    assert cursor.accept(frame(40)) is not None and cursor.after == 40


def test_a_split_message_is_one_event_with_the_whole_text() -> None:
    cursor = ThreadCursor("t", 0)
    assert cursor.accept(frame(1, text="Ban", part=1, parts=3)) is None
    assert cursor.accept(frame(1, text="ana", part=2, parts=3)) is None
    event = cursor.accept(frame(1, text="s!", part=3, parts=3))
    assert event is not None and (event.seq, event.text) == (1, "Bananas!")


def test_an_error_frame_ends_the_stream() -> None:
    with pytest.raises(StreamError, match="revoked"):
        ThreadCursor("t", 0).accept({"type": "error", "action": "subscribe", "error": "the key was revoked"})


def test_until_terminal_ends_at_the_closing_status_of_the_prompt() -> None:
    ending = Ending("p")
    other = ThreadEvent(seq=1, type="status", prompt_id="q", status="completed")
    assert not ending.reached(other)
    assert not ending.reached(ThreadEvent(seq=2, type="status", prompt_id="p", status="errored"))  # retried
    assert not ending.reached(ThreadEvent(seq=3, type="delta", prompt_id="p", text="x"))
    for status in ("completed", "abandoned", "canceled", "removed"):
        assert Ending("p").reached(ThreadEvent(seq=4, type="status", prompt_id="p", status=status))


def test_without_a_prompt_to_wait_for_the_first_one_shown_is_it() -> None:
    ending = Ending(None)
    assert not ending.reached(ThreadEvent(seq=1, type="status", prompt_id="p", status="running"))
    assert not ending.reached(ThreadEvent(seq=2, type="status", prompt_id="q", status="completed"))
    assert ending.reached(ThreadEvent(seq=3, type="status", prompt_id="p", status="completed"))


def test_reconnecting_is_bounded_but_an_idle_stream_dropped_now_and_then_goes_on() -> None:
    reconnects = Reconnects()
    for _ in range(MAX_RECONNECTS):
        assert reconnects.delay_after(ConnectionError("refused")) > 0
    with pytest.raises(StreamError, match="6 times in a row"):
        reconnects.delay_after(ConnectionError("refused"))
    idle = Reconnects()
    for _ in range(3 * MAX_RECONNECTS):  # connected, subscribed, dropped: again and again
        idle.subscribed()
        idle.delay_after(ConnectionError("dropped"))


def test_gaps_in_a_row_are_bounded_even_when_each_resubscription_is_confirmed() -> None:
    reconnects = Reconnects()
    for _ in range(MAX_RECONNECTS):
        reconnects.subscribed()
        reconnects.delay_after(Gap("seq 9 after 7"))
    reconnects.subscribed()
    with pytest.raises(StreamError):
        reconnects.delay_after(Gap("seq 9 after 7"))
    reconnects.delivered()
    assert reconnects.delay_after(Gap("seq 12 after 10")) > 0  # an event came between: counted afresh
