"""The prompts queue (SQS). A message carries ids only (prompt and owner), never the prompt text;
a removal check (domain.thread_events.RemovalCheck) also names the thread and the removed run's
lease."""

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from promptsvc.adapters.clients import client
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


@dataclass(frozen=True)
class QueuedWork:
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


class SqsPromptQueue:
    def __init__(self, queue_url: str) -> None:
        self._queue_url = queue_url

    def send(self, prompt_id: str, user_id: str) -> None:
        client("sqs").send_message(QueueUrl=self._queue_url, MessageBody=message_body(prompt_id, user_id))

    def send_removal_check(self, check: RemovalCheck, delay_seconds: int) -> None:
        client("sqs").send_message(
            QueueUrl=self._queue_url,
            MessageBody=removal_body(check),
            DelaySeconds=max(0, min(MAX_DELAY_SECONDS, delay_seconds)),
        )


class SqsMessages:
    """Settling received messages: visibility changes, deletes, and moves to the dead-letter queue."""

    def __init__(self, queue_url: str, dead_letter_url: str) -> None:
        self._queue_url = queue_url
        self._dead_letter_url = dead_letter_url

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
