"""Consumer metrics as CloudWatch EMF (Powertools), one metric line per event with the model as
a dimension; no shared buffer, so concurrent runs in one process cannot mix their figures."""

from aws_lambda_powertools import Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

tracer = Tracer()

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
    if status in OUTCOME_METRICS:
        _emit(OUTCOME_METRICS[status], MetricUnit.Count, 1, model_id)


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
