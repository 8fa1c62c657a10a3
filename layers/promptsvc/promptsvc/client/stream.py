"""A thread stream's bookkeeping, apart from any socket: what to send to (re)subscribe, which frames
are events, and when the stream is done. `Client` and `AsyncClient` drive it over a WebSocket.

The cursor is the last seq yielded. A resubscription asks for the events after it, so after a
dropped connection the replay starts exactly where the caller left off: nothing is lost, and a
frame at or below the cursor (a replay overlapping what was seen) is dropped, so nothing repeats.
"""

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from promptsvc.client.errors import StreamError
from promptsvc.client.models import ThreadEvent

Until = Literal["terminal"] | None
MAX_RECONNECTS = 5
RECONNECT_DELAY = 0.2  # seconds, doubled per consecutive failure


class Gap(Exception):
    """A frame skipped a seq (the API promises none): resubscribe after the cursor to get it."""


@dataclass
class ThreadCursor:
    thread_id: str
    after: int | None  # the last seq yielded; None: live events only, until the first
    user_id: str | None = None  # an admin following another user's thread
    _parts: dict[int, list[str]] = field(default_factory=dict)

    def subscribe_message(self) -> str:
        message: dict[str, Any] = {"action": "subscribe", "threadId": self.thread_id}
        if self.after is not None:
            message["after"] = self.after
        if self.user_id:
            message["userId"] = self.user_id
        return json.dumps(message)

    def accept(self, frame: dict[str, Any]) -> ThreadEvent | None:
        """The event this frame completes, in order; None for anything else. Raises Gap or StreamError."""
        if frame.get("type") == "error":
            raise StreamError(f"the WebSocket API refused {frame.get('action')!r}: {frame.get('error')}")
        if "seq" not in frame or frame.get("threadId", self.thread_id) != self.thread_id:
            return None  # subscribed, pong, another thread's event
        seq = int(frame["seq"])
        if self.after is not None and seq <= self.after:
            return None  # seen already
        if "parts" in frame:  # a message over the frame limit, split: same seq, texts concatenate
            pieces = self._parts.setdefault(seq, [])
            pieces.append(str(frame.get("text") or ""))
            if len(pieces) < int(frame["parts"]):
                return None
            frame = {**frame, "text": "".join(self._parts.pop(seq))}
        if self.after is not None and seq != self.after + 1:
            self._parts.clear()
            raise Gap(f"seq {seq} after {self.after}")
        self.after = seq
        return ThreadEvent.model_validate(frame)


@dataclass
class Ending:
    """For until="terminal": the stream ends with the closing status event of `prompt_id` (the
    thread's latest prompt when the stream started; None: the first prompt it shows)."""

    prompt_id: str | None

    def reached(self, event: ThreadEvent) -> bool:
        if self.prompt_id is None and event.prompt_id:
            self.prompt_id = event.prompt_id
        return event.closes_prompt and event.prompt_id == self.prompt_id


@dataclass
class Reconnects:
    """Bounds the reconnecting: at most MAX_RECONNECTS connections in a row that end before the API
    confirms the subscription, and at most MAX_RECONNECTS gaps in a row with no event between them
    (an idle stream that is dropped now and then, as API Gateway does, goes on for good)."""

    failures: int = 0
    gaps: int = 0

    def subscribed(self) -> None:
        self.failures = 0

    def delivered(self) -> None:
        self.failures = self.gaps = 0

    def delay_after(self, error: BaseException) -> float:
        """Seconds to wait before connecting again; StreamError past the bounds."""
        self.failures += 1
        self.gaps += isinstance(error, Gap)
        worst = max(self.failures, self.gaps)
        if worst > MAX_RECONNECTS:
            raise StreamError(f"the thread stream failed {worst} times in a row; last: {error!r}") from error
        return float(RECONNECT_DELAY * 2 ** (worst - 1))
