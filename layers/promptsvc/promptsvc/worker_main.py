"""`promptsvc-worker`: the queue consumer as a long-lived process, the ECS GPU task's entry point
(infra/ecs-gpu/Dockerfile). Beside the composition root, as the Lambda handlers are: it builds the
worker from the settings and runs it until SIGTERM (then drains)."""

import argparse
import asyncio

from promptsvc import wiring
from promptsvc.adapters.ecs_task_protection import TaskProtection
from promptsvc.consumer.fleet_metrics import FleetMetrics
from promptsvc.consumer.worker import Worker, WorkerOptions
from promptsvc.settings import get_settings


def run(concurrency: int | None = None, drain_seconds: float | None = None) -> None:
    settings = get_settings().for_function("worker")
    options = WorkerOptions(
        queue_url=settings.prompts_queue_url,
        bulk_queue_url=settings.prompts_bulk_queue_url,  # the bulk lane (fair queueing), if any
        concurrency=concurrency or settings.worker.worker_concurrency,
        drain_seconds=settings.worker.worker_drain_seconds if drain_seconds is None else drain_seconds,
        visibility_seconds=settings.worker.worker_visibility_seconds,
        lease_margin_seconds=settings.worker.worker_lease_margin_seconds,
    )
    worker = Worker(
        wiring.prompt_runner(settings),
        wiring.queue_messages(settings),
        options,
        protection=TaskProtection.from_environment(),
        # Its prompts running, a minute at a time: what infra/ecs-gpu/stack.yaml scales on.
        fleet_metrics=FleetMetrics.for_queue_url(settings.prompts_queue_url),
    )
    asyncio.run(worker.run())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--concurrency", type=int, default=None, help="prompts in flight (default 32)")
    parser.add_argument("--drain-seconds", type=float, default=None, help="SIGTERM drain time (default 100)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="promptsvc-worker", description="run the queue consumer as a long-lived process (ECS GPU)"
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    run(args.concurrency, args.drain_seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
