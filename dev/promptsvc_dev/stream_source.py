"""What Lambda's DynamoDB Streams event source mapping does, for the local stack and tests.

A pump thread reads a table's stream (moto's) shard by shard, from LATEST as of `start()`, and
hands the handler `{"Records": [...]}` batches of the real Lambda shape: moto's records lack
`eventSourceARN` and give `ApproximateCreationDateTime` as a datetime, so the ARN is added and the
time made epoch seconds (rounded down, as DynamoDB does); binary attributes go back to base64.
When idle it polls every 20 ms (50 ms after 2 s without records), so an event reaches the handler
within tens of milliseconds.

Failures follow the mapping's settings (template.yaml's `Events: Type: DynamoDB` properties): a
handler that raises fails the batch (split in two when `BisectBatchOnFunctionError`); with
`ReportBatchItemFailures` the records from the lowest failed `SequenceNumber` on are retried. After
`MaximumRetryAttempts` retries the records are skipped and, when an on-failure queue is given, a
message of Lambda's shape (`DDBStreamBatchInfo`) is sent there. Records of a shard stay in order: a
failing batch holds its shard until it succeeds or is given up.

Needs `AWS_ACCOUNT_ID_ENDPOINT_MODE=disabled` (set by `promptsvc_dev.dev.aws_environment`), else
moto answers `describe_stream` with a 404.
"""

import base64
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError
from promptsvc.adapters.clients import client

from promptsvc_dev.functions import LambdaContext

logger = Logger(child=True)

Handler = Callable[[dict[str, Any], Any], Any]

IDLE_SECONDS = 0.02
SLOW_IDLE_SECONDS = 0.05
SLOW_AFTER_SECONDS = 2.0
REDESCRIBE_SECONDS = 5.0  # new shards are looked for this often


def _lambda_value(value: Any) -> Any:
    """An AttributeValue as Lambda's JSON has it: binaries base64, the rest as boto3 returns it."""
    if not isinstance(value, dict) or len(value) != 1:
        return value
    ((kind, inner),) = value.items()
    if kind == "B":
        return {"B": base64.b64encode(inner).decode()}
    if kind == "BS":
        return {"BS": [base64.b64encode(item).decode() for item in inner]}
    if kind == "M":
        return {"M": {name: _lambda_value(item) for name, item in inner.items()}}
    if kind == "L":
        return {"L": [_lambda_value(item) for item in inner]}
    return value


def lambda_record(record: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    """A stream record (as boto3 or moto gives it) in the shape Lambda hands a function."""
    out = dict(record)
    dynamodb = dict(record.get("dynamodb", {}))
    created = dynamodb.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        dynamodb["ApproximateCreationDateTime"] = int(created.timestamp())
    for image in ("Keys", "NewImage", "OldImage"):
        if image in dynamodb:
            dynamodb[image] = {name: _lambda_value(value) for name, value in dynamodb[image].items()}
    out["dynamodb"] = dynamodb
    out["eventSourceARN"] = stream_arn
    return out


def _release_iterator(iterator: str) -> None:
    """moto keeps every shard iterator it hands out (one per GetRecords call, ~2 KB each, tens a
    second here): when moto runs in this process (`promptsvc dev`), drop the ones already used."""
    models = sys.modules.get("moto.dynamodbstreams.models")
    if models is None:
        return
    try:
        _, _, _, region, account = iterator.split(":", 5)[:5]
        backends = models.dynamodbstreams_backends
        if account in backends and region in backends[account]:
            backends[account][region].shard_iterators.pop(iterator, None)
    except Exception:
        pass


class DynamoStreamSource:
    def __init__(
        self,
        table_name: str,
        handler: Handler,
        *,
        batch_size: int = 100,
        maximum_retry_attempts: int = 5,
        bisect_on_error: bool = False,
        report_batch_item_failures: bool = True,
        on_failure_queue_url: str | None = None,
        function_name: str = "StreamFunction",
        retry_base_seconds: float = 0.1,
    ) -> None:
        self.table_name = table_name
        self.handler = handler
        self.batch_size = batch_size
        self.maximum_retry_attempts = maximum_retry_attempts
        self.bisect_on_error = bisect_on_error
        self.report_batch_item_failures = report_batch_item_failures
        self.on_failure_queue_url = on_failure_queue_url
        self.function_name = function_name
        self.retry_base_seconds = retry_base_seconds
        table = client("dynamodb").describe_table(TableName=table_name)["Table"]
        if not table.get("LatestStreamArn"):
            raise ValueError(f"table {table_name} has no stream")
        self.stream_arn: str = table["LatestStreamArn"]
        self.region = self.stream_arn.split(":")[3]
        self._iterators: dict[str, str] = {}  # shard id -> the next iterator to read
        self._last_sequence: dict[str, str] = {}
        self._described_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.delivered = 0  # records handed to the handler and done with (tests, benchmarks)

    @classmethod
    def from_event_properties(
        cls, table_name: str, handler: Handler, properties: dict[str, Any], **kwargs: Any
    ) -> "DynamoStreamSource":
        """Settings from a SAM `Events: {Type: DynamoDB}` entry's properties."""
        settings = {
            "batch_size": int(properties.get("BatchSize", 100)),
            "maximum_retry_attempts": int(properties.get("MaximumRetryAttempts", 5)),
            "bisect_on_error": bool(properties.get("BisectBatchOnFunctionError", False)),
            "report_batch_item_failures": "ReportBatchItemFailures"
            in properties.get("FunctionResponseTypes", []),
        }
        if properties.get("MaximumRetryAttempts", 0) == -1:
            settings["maximum_retry_attempts"] = 10_000  # "retry until the record expires"
        return cls(table_name, handler, **{**settings, **kwargs})

    # -- reading -----------------------------------------------------------------------------

    def seek(self, starting_position: str = "LATEST") -> None:
        """Find the stream's shards; those not known yet are read from `starting_position` (the first
        time) or from their beginning (shards that appear later, so nothing written to them is missed)."""
        streams = client("dynamodbstreams")
        shards = streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"].get("Shards", [])
        for shard in shards:
            shard_id = shard["ShardId"]
            if shard_id in self._iterators:
                continue
            kind = starting_position if not self._described_at else "TRIM_HORIZON"
            self._iterators[shard_id] = streams.get_shard_iterator(
                StreamArn=self.stream_arn, ShardId=shard_id, ShardIteratorType=kind
            )["ShardIterator"]
        self._described_at = time.monotonic()

    def poll_once(self) -> int:
        """Read every shard once and deliver what was there; returns how many records it held."""
        if time.monotonic() - self._described_at > REDESCRIBE_SECONDS:
            self.seek()
        streams = client("dynamodbstreams")
        total = 0
        for shard_id, iterator in list(self._iterators.items()):
            try:
                page = streams.get_records(ShardIterator=iterator, Limit=self.batch_size)
            except ClientError as error:
                code = error.response["Error"]["Code"]
                if code not in ("ExpiredIteratorException", "TrimmedDataAccessException"):
                    raise
                self._iterators[shard_id] = self._reopen(shard_id)
                continue
            _release_iterator(iterator)
            records = page.get("Records", [])
            next_iterator = page.get("NextShardIterator")
            if next_iterator:
                self._iterators[shard_id] = next_iterator
            else:  # the shard is closed and read to its end
                del self._iterators[shard_id]
            if records:
                self._last_sequence[shard_id] = records[-1]["dynamodb"]["SequenceNumber"]
                self._deliver(shard_id, [lambda_record(r, self.stream_arn) for r in records])
                total += len(records)
        return total

    def _reopen(self, shard_id: str) -> str:
        args: dict[str, Any] = {"StreamArn": self.stream_arn, "ShardId": shard_id}
        last = self._last_sequence.get(shard_id)
        if last:
            args.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=last)
        else:
            args.update(ShardIteratorType="TRIM_HORIZON")
        return client("dynamodbstreams").get_shard_iterator(**args)["ShardIterator"]

    def drain(self, max_polls: int = 1000) -> int:
        """Deliver until the stream has nothing new (tests use this)."""
        total = 0
        for _ in range(max_polls):
            delivered = self.poll_once()
            if not delivered:
                break
            total += delivered
        return total

    # -- delivering --------------------------------------------------------------------------

    def _deliver(self, shard_id: str, records: list[dict[str, Any]], retries_done: int = 0) -> int:
        """Hand `records` to the handler until done or given up; returns the retries it took."""
        while records:
            failed_from = self._invoke(records)
            if failed_from is None:
                self.delivered += len(records)
                return retries_done
            if retries_done >= self.maximum_retry_attempts or self._stop.is_set():
                self._give_up(shard_id, records[max(failed_from, 0) :], retries_done)
                return retries_done
            self._stop.wait(min(2.0, self.retry_base_seconds * 2**retries_done))
            retries_done += 1
            if failed_from < 0:  # the function failed
                if self.bisect_on_error and len(records) > 1:
                    middle = len(records) // 2
                    retries_done = self._deliver(shard_id, records[:middle], retries_done)
                    return self._deliver(shard_id, records[middle:], retries_done)
                continue
            self.delivered += failed_from
            records = records[failed_from:]
        return retries_done

    def _invoke(self, records: list[dict[str, Any]]) -> int | None:
        """None when the batch is done; else the index to retry from (-1: the function failed)."""
        context = LambdaContext(function_name=self.function_name)
        try:
            response = self.handler({"Records": records}, context)
        except Exception:
            logger.exception("stream handler failed; the batch will be retried", records=len(records))
            return -1
        if not self.report_batch_item_failures or not isinstance(response, dict):
            return None
        failures = response.get("batchItemFailures") or []
        if not failures:
            return None
        positions = {r["dynamodb"]["SequenceNumber"]: i for i, r in enumerate(records)}
        indexes = [positions.get(f.get("itemIdentifier") if isinstance(f, dict) else None) for f in failures]
        # An identifier that names no record of the batch fails the whole batch, as in Lambda.
        failed_from = 0 if None in indexes else min(i for i in indexes if i is not None)
        logger.warning("stream handler reported failed records; retrying", failed_from=failed_from)
        return failed_from

    def _give_up(self, shard_id: str, records: list[dict[str, Any]], retries: int) -> None:
        logger.error(
            "stream records skipped: retries exhausted",
            records=len(records),
            first=records[0]["dynamodb"]["SequenceNumber"],
        )
        if not self.on_failure_queue_url:
            return
        arrivals = [r["dynamodb"].get("ApproximateCreationDateTime", 0) for r in records]
        message = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": LambdaContext(function_name=self.function_name).invoked_function_arn,
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": retries + 1,
            },
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            },
            "version": "1.0",
            "timestamp": _iso(time.time()),
            "DDBStreamBatchInfo": {
                "shardId": shard_id,
                "startSequenceNumber": records[0]["dynamodb"]["SequenceNumber"],
                "endSequenceNumber": records[-1]["dynamodb"]["SequenceNumber"],
                "approximateArrivalOfFirstRecord": _iso(min(arrivals)),
                "approximateArrivalOfLastRecord": _iso(max(arrivals)),
                "batchSize": len(records),
                "streamArn": self.stream_arn,
            },
        }
        try:
            client("sqs").send_message(QueueUrl=self.on_failure_queue_url, MessageBody=json.dumps(message))
        except Exception:
            logger.exception("could not send the on-failure record")

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, starting_position: str = "LATEST") -> None:
        """Start reading; with LATEST, what is written from this call on reaches the handler."""
        self.seek(starting_position)
        self._thread = threading.Thread(target=self._loop, name="dynamodb-stream-source", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        last_records = time.monotonic()
        while not self._stop.is_set():
            try:
                if self.poll_once():
                    last_records = time.monotonic()
                    continue
            except Exception:
                if self._stop.is_set():
                    return
                logger.exception("reading the stream failed")
                self._stop.wait(1.0)
                continue
            idle = time.monotonic() - last_records
            self._stop.wait(IDLE_SECONDS if idle < SLOW_AFTER_SECONDS else SLOW_IDLE_SECONDS)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
