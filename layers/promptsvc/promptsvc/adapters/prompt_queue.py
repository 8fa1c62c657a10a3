"""The prompts queue (SQS). A message carries only the prompt id, never the prompt text."""

import json

from promptsvc.adapters.clients import client


def message_body(prompt_id: str) -> str:
    return json.dumps({"promptId": prompt_id})


def prompt_id_from_body(body: str) -> str:
    """The prompt id in a queue message; ValueError when the message is not one of ours."""
    data = json.loads(body)
    prompt_id = data.get("promptId") if isinstance(data, dict) else None
    if not isinstance(prompt_id, str) or not prompt_id:
        raise ValueError("queue message has no promptId")
    return prompt_id


class SqsPromptQueue:
    def __init__(self, queue_url: str) -> None:
        self._queue_url = queue_url

    def send(self, prompt_id: str) -> None:
        client("sqs").send_message(QueueUrl=self._queue_url, MessageBody=message_body(prompt_id))
