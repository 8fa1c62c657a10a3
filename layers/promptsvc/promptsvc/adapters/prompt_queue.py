"""The prompts queue (SQS). A message carries ids only (prompt and owner), never the prompt text."""

import json

from promptsvc.adapters.clients import client


def message_body(prompt_id: str, user_id: str) -> str:
    """The message: ids only, the owner's and the prompt's (prompt ids are per user)."""
    return json.dumps({"promptId": prompt_id, "userId": user_id})


def parse_body(body: str) -> tuple[str, str]:
    """The prompt id and owner id of a queue message; ValueError when the message is not one of
    ours."""
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError("queue message is not a JSON object")
    prompt_id, user_id = data.get("promptId"), data.get("userId")
    if not isinstance(prompt_id, str) or not prompt_id:
        raise ValueError("queue message has no promptId")
    if not isinstance(user_id, str) or not user_id:
        raise ValueError("queue message has no userId")
    return prompt_id, user_id


class SqsPromptQueue:
    def __init__(self, queue_url: str) -> None:
        self._queue_url = queue_url

    def send(self, prompt_id: str, user_id: str) -> None:
        client("sqs").send_message(QueueUrl=self._queue_url, MessageBody=message_body(prompt_id, user_id))


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

    def dead_letter(self, body: str, reason: str) -> None:
        """Put a copy on the dead-letter queue; the caller then deletes the original."""
        client("sqs").send_message(
            QueueUrl=self._dead_letter_url,
            MessageBody=body,
            MessageAttributes={"reason": {"DataType": "String", "StringValue": reason[:1000]}},
        )
