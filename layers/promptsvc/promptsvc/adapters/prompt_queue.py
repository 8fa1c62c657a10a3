"""The prompts queue (SQS). A message carries ids only (prompt and owner), never the prompt text;
a removal check (domain.thread_events.RemovalCheck) also names the thread and the removed run's
lease.

Two lanes (domain/lanes.py): the fast lane is PROMPTS_QUEUE_URL, the bulk lane
PROMPTS_BULK_QUEUE_URL (empty: one lane, every message on the first). Every prompt message carries
its owner as `MessageGroupId`: on a standard queue that makes it an SQS fair queue, whose dwell
time for a quiet group AWS keeps low within the lane (SQS's own behaviour; moto accepts the
attribute and does not reorder). A received message is settled on the queue it came from
(`SqsMessages.of_queue`)."""

import msgspec
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from promptsvc.adapters.clients import client
from promptsvc.domain.lanes import Lane
from promptsvc.domain.thread_events import RemovalCheck
from promptsvc.domain.validation import describe

MAX_DELAY_SECONDS = 900  # SQS's largest DelaySeconds


class _Removal(BaseModel):
    model_config = ConfigDict(defer_build=True)  # built on the first message, not at import

    threadId: str = Field(min_length=1)
    afterSeq: int = Field(ge=0)
    leaseUntil: int = Field(ge=0)


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, defer_build=True)

    promptId: str = Field(min_length=1)
    userId: str = Field(min_length=1)
    removal: _Removal | None = None


class QueuedWork(msgspec.Struct, frozen=True):
    """What a message asks: run the prompt, or (with `removal`) check its removed run's thread."""

    prompt_id: str
    user_id: str
    removal: RemovalCheck | None = None


def message_body(prompt_id: str, user_id: str) -> str:
    """The message: ids only, the owner's and the prompt's (prompt ids are per user)."""
    return _Body(promptId=prompt_id, userId=user_id).model_dump_json(exclude_none=True)


def removal_body(check: RemovalCheck) -> str:
    removal = _Removal(threadId=check.thread_id, afterSeq=check.after_seq, leaseUntil=check.lease_until_ms)
    return _Body(promptId=check.prompt_id, userId=check.user_id, removal=removal).model_dump_json()


def parse_body(body: str) -> QueuedWork:
    """What a queue message asks; ValueError (naming the problem) when it is not one of ours."""
    try:
        data = _Body.model_validate_json(body)
    except ValidationError as error:
        raise ValueError(f"queue message: {describe(error.errors(include_url=False))}") from None
    removal = None
    if data.removal is not None:
        removal = RemovalCheck(
            data.userId, data.promptId, data.removal.threadId, data.removal.afterSeq, data.removal.leaseUntil
        )
    return QueuedWork(data.promptId, data.userId, removal)


def queue_name(queue: str) -> str:
    """A queue's name, from its URL (`https://sqs.../123/name`) or ARN (`arn:aws:sqs:...:name`)."""
    return queue.rsplit("/", 1)[-1].rsplit(":", 1)[-1]


class SqsPromptQueue:
    def __init__(self, queue_url: str, bulk_queue_url: str = "") -> None:
        self._queue_url = queue_url
        self._bulk_queue_url = bulk_queue_url

    def url_of(self, lane: str) -> str:
        """The queue of a lane: the bulk lane's when it has one, else the fast lane's."""
        return self._bulk_queue_url if lane == Lane.BULK and self._bulk_queue_url else self._queue_url

    def send(self, prompt_id: str, user_id: str, lane: str = Lane.NONE) -> None:
        client("sqs").send_message(
            QueueUrl=self.url_of(lane),
            MessageBody=message_body(prompt_id, user_id),
            MessageGroupId=user_id,  # a fair queue's tenant: SQS evens dwell time across groups
        )

    def send_later(self, prompt_id: str, user_id: str, delay_seconds: int, lane: str = Lane.NONE) -> None:
        """Queue the prompt, delivered no sooner than `delay_seconds` (at most 900, SQS's limit): an
        async run's retry or fallback (consumer/async_runs.py), which has no message of its own."""
        client("sqs").send_message(
            QueueUrl=self.url_of(lane),
            MessageBody=message_body(prompt_id, user_id),
            MessageGroupId=user_id,
            DelaySeconds=max(0, min(MAX_DELAY_SECONDS, delay_seconds)),
        )

    def send_removal_check(self, check: RemovalCheck, delay_seconds: int) -> None:
        client("sqs").send_message(
            QueueUrl=self._queue_url,
            MessageBody=removal_body(check),
            MessageGroupId=check.user_id,
            DelaySeconds=max(0, min(MAX_DELAY_SECONDS, delay_seconds)),
        )


class SqsMessages:
    """Settling received messages: visibility changes, deletes, and moves to the dead-letter queue,
    on the queue `queue_url` (`of_queue`: the same for another lane's messages)."""

    def __init__(
        self, queue_url: str, dead_letter_url: str, bulk_queue_url: str = "", *, bound: str = ""
    ) -> None:
        self._fast_url = queue_url
        self._bulk_url = bulk_queue_url
        self._dead_letter_url = dead_letter_url
        self._queue_url = bound or queue_url

    @property
    def queue_url(self) -> str:
        """The queue whose messages this settles."""
        return self._queue_url

    @property
    def lanes(self) -> tuple[str, ...]:
        """The queues consumers read: the fast lane's, then the bulk lane's when there is one."""
        return (self._fast_url, self._bulk_url) if self._bulk_url else (self._fast_url,)

    def of_queue(self, queue: str) -> "SqsMessages":
        """Settling the messages of `queue` (its URL, or its ARN: a Lambda record's
        `eventSourceARN`): the bulk lane's when it names the bulk queue, else the fast lane's."""
        bulk = bool(self._bulk_url) and queue_name(queue) == queue_name(self._bulk_url)
        url = self._bulk_url if bulk else self._fast_url
        if url == self._queue_url:
            return self
        return SqsMessages(self._fast_url, self._dead_letter_url, self._bulk_url, bound=url)

    def change_visibility(self, receipt_handle: str, seconds: int) -> None:
        client("sqs").change_message_visibility(
            QueueUrl=self._queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=seconds
        )

    def delete(self, receipt_handle: str) -> None:
        client("sqs").delete_message(QueueUrl=self._queue_url, ReceiptHandle=receipt_handle)

    def delete_many(self, receipt_handles: list[str]) -> list[str]:
        """Delete up to 10 messages in one call (DeleteMessageBatch); the handles not deleted."""
        entries = [{"Id": str(i), "ReceiptHandle": handle} for i, handle in enumerate(receipt_handles)]
        answer = client("sqs").delete_message_batch(QueueUrl=self._queue_url, Entries=entries)
        return [receipt_handles[int(failed["Id"])] for failed in answer.get("Failed", [])]

    def dead_letter(self, body: str, reason: str) -> None:
        """Put a copy on the dead-letter queue; the caller then deletes the original."""
        client("sqs").send_message(
            QueueUrl=self._dead_letter_url,
            MessageBody=body,
            MessageAttributes={"reason": {"DataType": "String", "StringValue": reason[:1000]}},
        )
