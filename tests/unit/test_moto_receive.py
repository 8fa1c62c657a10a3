"""benchmarks/moto_receive.py: the consumer benchmark's cheaper retention check answers as moto's own
does, for messages within and past the queue's retention period."""

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from moto.sqs.models import SQSBackend, sqs_backends

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def patched(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[object, object]]:
    """moto's own check and the installed one; moto's is put back after the test."""
    own = SQSBackend.is_message_valid_based_on_retention_period
    monkeypatch.setattr(SQSBackend, "is_message_valid_based_on_retention_period", own)
    spec = importlib.util.spec_from_file_location("moto_receive", ROOT / "benchmarks" / "moto_receive.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.install()
    installed = SQSBackend.is_message_valid_based_on_retention_period
    assert installed is not own
    yield own, installed


@pytest.mark.parametrize("retention", [None, "60"])
def test_the_cheaper_check_answers_as_motos_own(patched: tuple, retention: str | None) -> None:
    own, installed = patched
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        attributes = {"MessageRetentionPeriod": retention} if retention else {}
        sqs.create_queue(QueueName="q", Attributes=attributes)
        url = sqs.get_queue_url(QueueName="q")["QueueUrl"]
        for body in ("fresh", "old", "ancient"):
            sqs.send_message(QueueUrl=url, MessageBody=body)
        backend = sqs_backends["123456789012"]["us-east-1"]
        messages = list(backend.get_queue("q")._messages)
        period = int(retention or 345_600)
        messages[1].sent_timestamp -= (period - 5) * 1000  # 5 s left
        messages[2].sent_timestamp -= (period + 5) * 1000  # 5 s past
        answers = [(own(backend, "q", m), installed(backend, "q", m)) for m in messages]  # type: ignore[operator]

        assert answers == [(True, True), (True, True), (False, False)]
        received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        assert [m["Body"] for m in received] == ["fresh", "old"]
