"""Local EventBridge schedules: rate expressions and the event shape."""

import pytest
from promptsvc_dev.schedule_source import rate_seconds, scheduled_event


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [("rate(1 minute)", 60), ("rate(5 minutes)", 300), ("rate(2 hours)", 7200), ("rate(1 day)", 86400)],
)
def test_rate_expressions(expression: str, seconds: int) -> None:
    assert rate_seconds(expression) == seconds


@pytest.mark.parametrize("expression", ["cron(0 * * * ? *)", "rate(1 week)", "rate(minute)"])
def test_other_expressions_are_refused(expression: str) -> None:
    with pytest.raises(ValueError, match="unsupported schedule expression"):
        rate_seconds(expression)


def test_event_has_the_scheduled_event_shape() -> None:
    event = scheduled_event("DeadLetterFunction")

    assert event["detail-type"] == "Scheduled Event"
    assert event["resources"][0].endswith(":schedule/default/DeadLetterFunction")
    assert event["detail"] == {}
