"""Consumer metrics as CloudWatch EMF (Powertools), one metric line per event with the model as
a dimension; no shared buffer, so concurrent runs in one process cannot mix their figures.

Outcome counts also go to an all-models series (dimension `service` only) in the same document:
a CloudWatch alarm watches one series and must name all its dimensions, so it cannot sum over
the ModelId values (template.yaml's PromptsAbandonedAlarm reads that series).

Log lines of a run carry the prompt's keys (`log_keys`) for the same reason: the records of a
batch run concurrently, so shared logger state would mix them."""

from typing import Any

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit, single_metric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from promptsvc import tracing
from promptsvc.domain.prompt import Prompt

tracer = tracing.tracer()

OUTCOME_METRICS = {
    "completed": "PromptsCompleted",
    "errored": "PromptsErrored",
    "abandoned": "PromptsAbandoned",
    "canceled": "PromptsCanceled",
}


def _emit(name: str, unit: MetricUnit, value: float, model_id: str) -> None:
    if is_metrics_disabled():  # single_metric does not look at POWERTOOLS_METRICS_DISABLED itself
        return
    with single_metric(name=name, unit=unit, value=value) as metric:
        metric.add_dimension(name="ModelId", value=model_id)


def outcome(status: str, model_id: str) -> None:
    if status not in OUTCOME_METRICS or is_metrics_disabled():
        return
    metrics = EphemeralMetrics()  # one document, not shared with concurrent runs
    metrics.add_metric(name=OUTCOME_METRICS[status], unit=MetricUnit.Count, value=1)
    metrics.add_dimension(name="ModelId", value=model_id)
    if metrics.service:  # the all-models series: `service` alone
        metrics.add_dimensions(service=metrics.service)
    metrics.flush_metrics()


def cache_hit(model_id: str) -> None:
    _emit("ResponseCacheHits", MetricUnit.Count, 1, model_id)


def queued(seconds: float, model_id: str) -> None:
    _emit("TimeInQueue", MetricUnit.Seconds, max(0.0, seconds), model_id)


def generation(
    model_id: str, *, first_token_seconds: float | None, seconds: float, completion_tokens: int
) -> None:
    if first_token_seconds is not None:
        _emit("TimeToFirstToken", MetricUnit.Seconds, first_token_seconds, model_id)
    _emit("GenerationTime", MetricUnit.Seconds, seconds, model_id)
    if seconds > 0 and completion_tokens:
        _emit("TokensPerSecond", MetricUnit.CountPerSecond, completion_tokens / seconds, model_id)


def log_keys(prompt: Prompt) -> dict[str, Any]:
    """Per-line keys of a run's log lines."""
    return {"prompt_id": prompt.id, "thread_id": prompt.threadId, "model_id": prompt.modelId}
