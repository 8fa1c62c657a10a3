"""What Lambda's SQS event source mapping does, for the local stack and tests.

Receives a batch, hands the handler an `aws:sqs` event of the real shape, then deletes the
messages the handler did not report in `batchItemFailures`; the failed ones stay on the queue and
come back after the visibility timeout (and reach the DLQ through the queue's redrive policy).

A function fed by several queues (the consumer: both lanes of fair queueing, domain/lanes.py) gets
one batch from each queue that has messages in turn, each event naming its own queue's ARN, as its
event source mappings would deliver them (`consumer_queues` reads them from the template).
"""

import threading
from collections.abc import Callable, Sequence
from typing import Any

from aws_lambda_powertools import Logger
from promptsvc.adapters.clients import client
from promptsvc.engines.mock import ConsumerKilled

from promptsvc_dev.functions import LambdaContext

logger = Logger(child=True)

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
# Chaos (dev/promptsvc_dev/chaos.py): sees each received batch before the handler, e.g. to send duplicates.
OnReceive = Callable[[Any, str, list[dict[str, Any]]], None]


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": m.get("MessageAttributes", {}),
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for m in messages
        ]
    }


def consumer_queues(stack: Any, function: str = "ConsumerFunction") -> list[str]:
    """The URLs of the queues whose SQS events feed `function` in the template, in its order."""
    events = stack.template["Resources"][function]["Properties"].get("Events", {})
    return [
        stack.refs[event["Properties"]["Queue"]["Fn::GetAtt"][0]]
        for event in events.values()
        if event["Type"] == "SQS"
    ]


class SqsEventSource:
    def __init__(
        self,
        queue_url: str | Sequence[str],
        handler: Handler,
        *,
        batch_size: int = 10,
        wait_seconds: int = 1,
        function_name: str = "ConsumerFunction",
        timeout_seconds: float = 120.0,
        on_receive: OnReceive | None = None,
    ) -> None:
        urls = [queue_url] if isinstance(queue_url, str) else list(queue_url)
        self.queue_url = urls[0]
        self.handler = handler
        self.batch_size = batch_size
        self.wait_seconds = wait_seconds
        self.function_name = function_name
        self.timeout_seconds = timeout_seconds
        self.on_receive = on_receive
        self.killed = 0  # invocations that died (chaos)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.queues = [(url, self._arn(url)) for url in urls]  # (url, arn), fed in this order
        self.queue_arn = self.queues[0][1]
        self.region = self.queue_arn.split(":")[3]

    @staticmethod
    def _arn(queue_url: str) -> str:
        attrs = client("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        return str(attrs["Attributes"]["QueueArn"])

    def poll_once(self, wait_seconds: int | None = None) -> int:
        """Deliver one batch from each queue that has messages (only the first queue's poll waits,
        and only when the others had none); returns how many messages they held."""
        wait = self.wait_seconds if wait_seconds is None else wait_seconds
        delivered = sum(self._poll_queue(url, arn, 0) for url, arn in self.queues[1:])
        return delivered + self._poll_queue(*self.queues[0], 0 if delivered else wait)

    def _poll_queue(self, queue_url: str, queue_arn: str, wait_seconds: int) -> int:
        """Deliver one batch of the queue; returns how many messages it held."""
        sqs = client("sqs")
        received = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = received.get("Messages", [])
        if not messages:
            return 0
        if self.on_receive is not None:
            self.on_receive(sqs, queue_url, messages)
        event = sqs_event(messages, queue_arn, self.region)
        context = LambdaContext(
            function_name=self.function_name, remaining_ms=int(self.timeout_seconds * 1000)
        )
        try:
            response = self.handler(event, context) or {}
            failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        except ConsumerKilled as killed:
            # The invocation died (chaos): nothing is settled or deleted; the batch comes back
            # after its visibility timeout, its prompts' leases still held.
            self.killed += 1
            from promptsvc_dev.chaos import injected

            injected["consumer invocations killed"] += 1
            logger.warning("chaos: the consumer invocation was killed", reason=str(killed))
            return len(messages)
        except Exception:
            # A handler that raises fails the whole batch, as in Lambda.
            logger.exception("consumer handler failed; the batch will be delivered again")
            return len(messages)
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
            )
        return len(messages)

    def drain(self, max_batches: int = 1000) -> int:
        """Deliver batches until the queue has nothing visible (tests use this)."""
        total = 0
        for _ in range(max_batches):
            delivered = self.poll_once(wait_seconds=0)
            if not delivered:
                break
            total += delivered
        return total

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="sqs-event-source", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                if self._stop.is_set():
                    return
                logger.exception("polling the queue failed")
                self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
