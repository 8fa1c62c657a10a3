"""The ECS worker's settings (a group of `promptsvc.settings.Settings`, read from the same flat
variable names)."""

from pydantic import Field

from promptsvc.settings.environment import FromEnvironment


class WorkerSettings(FromEnvironment):
    """The ECS worker (consumer/worker.py): its concurrency, drain and message visibility."""

    worker_concurrency: int = Field(32, ge=1, description="prompts one ECS worker runs at once")
    worker_drain_seconds: float = Field(100.0, ge=0, description="SIGTERM: time to finish in-flight work")
    worker_visibility_seconds: int = Field(60, ge=2, description="visibility the worker keeps extending")
    worker_lease_margin_seconds: float = Field(30.0, ge=0, description="lease beyond the visibility")
