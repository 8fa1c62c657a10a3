"""`promptsvc dev`: the whole service on one machine, with moto standing in for AWS.

moto runs embedded on 127.0.0.1; the tables, queues and secrets are created from template.yaml;
each function gets the environment the template gives it; the API (the same FastAPI app Mangum
serves in Lambda) runs under uvicorn; an SQS event source emulator feeds the consumer handler
from functions/consumer/app.py, and the async endpoints' topics feed functions/settle/app.py
(moto SNS -> a local SQS subscription, `sns_source`); with `--engine sagemaker-async` a local
async endpoint (`async_endpoint`, InvokeEndpointAsync over HTTP, S3 and SNS on moto) answers;
a local WebSocket API (`ws_gateway`) feeds functions/ws/app.py and
serves the `@connections` API (on a port of its own), and a DynamoDB stream pump (`stream_source`)
feeds the thread events to functions/stream/app.py. Only endpoints differ from AWS.
"""

import json
import logging
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptsvc.domain.keys import Role, generate_key

from promptsvc_dev.template import LocalStack, create_resources, find_template

REGION = "us-east-1"
STATE_FILE = Path(".promptsvc") / "dev.json"  # under the checkout, unless $PROMPTSVC_DEV_STATE names one
ASYNC_ENDPOINT_NAME = "promptsvc-dev-async"  # what the local async endpoint is called
MAX_HEADER_BYTES = 16 * 1024  # the request line and headers (API Gateway's HTTP API: 10 KB)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def aws_environment(endpoint: str) -> dict[str, str]:
    """What points boto3 (and so every handler) at moto, with credentials that are not real."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }


@dataclass
class DevOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    ws_port: int = 8081
    callback_port: int = 0  # the @connections API (WEBSOCKET_ENDPOINT); 0: a free one
    moto_port: int = 0
    api_key: str | None = None
    engine: str = "mock"
    mock_chunk_delay: float | None = None
    sync_wait_seconds: float | None = None
    chaos: str = ""  # the chaos profile (dev/promptsvc_dev/chaos.py), e.g. "all,seed=7"; empty: none


class DevStack:
    def __init__(self, options: DevOptions, root: Path | None = None) -> None:
        self.options = options
        self.template_path = find_template(root)
        self.root = self.template_path.parent
        self.moto: Any = None
        self.stack: LocalStack | None = None
        self.event_source: Any = None
        self.schedules: list[Any] = []
        self.ws_port = options.ws_port or free_port()
        self.callback_port = options.callback_port or free_port()
        self.gateway: Any = None
        self.stream_source: Any = None
        self.streams_off = ""  # why the WebSocket API is not running, when it is not
        self.admin_key = ""
        self.generated_key = False
        self.event_sources: list[Any] = []
        self.async_endpoint: Any = None  # the local SageMaker async endpoint (--engine sagemaker-async)
        self.chaos: Any = None
        if options.chaos:
            from promptsvc_dev.chaos import ChaosOptions

            self.chaos = ChaosOptions.parse(options.chaos)

    @property
    def connections_endpoint(self) -> str:
        """The WebSocket API's `@connections` callback API: WEBSOCKET_ENDPOINT locally."""
        return f"http://127.0.0.1:{self.callback_port}"

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        from moto.server import ThreadedMotoServer
        from promptsvc.adapters import clients
        from promptsvc.settings import get_settings

        from promptsvc_dev import moto_atomic

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request lines
        moto_atomic.install()  # AWS's atomic conditional writes, always (not only under chaos)
        port = self.options.moto_port or free_port()
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.moto.start()
        os.environ.update(aws_environment(f"http://127.0.0.1:{port}"))
        clients.reset()
        self.stack = create_resources(self.template_path, REGION, self._parameters())
        self._start_async_endpoint()
        os.environ.update(self._function_environment())
        get_settings.cache_clear()
        self._bootstrap_admin_key()
        self._start_chaos()
        self._start_consumer()
        self._start_settle()
        self._start_thread_streams()
        self._write_state(port)

    def _parameters(self) -> dict[str, str]:
        if self.options.sync_wait_seconds is None:
            return {}
        return {"SyncWaitSeconds": str(self.options.sync_wait_seconds)}

    def _function_environment(self) -> dict[str, str]:
        """The union of every function's environment from the template (they run in one process)."""
        assert self.stack is not None
        merged: dict[str, str] = {}
        for function in self.stack.functions():
            for name, value in self.stack.function_environment(function).items():
                if merged.get(name, value) != value:
                    raise ValueError(f"functions disagree on {name}: {merged[name]!r} vs {value!r}")
                merged[name] = value
        if self.options.engine:
            merged["ENGINE"] = self.options.engine
        if self.options.mock_chunk_delay is not None:
            merged["MOCK_CHUNK_DELAY_SECONDS"] = str(self.options.mock_chunk_delay)
        if self.async_endpoint is not None:
            merged["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] = self.async_endpoint.url  # only that service
            merged["SAGEMAKER_ASYNC_ENDPOINT"] = ASYNC_ENDPOINT_NAME  # for models the catalog gives none
        merged["WEBSOCKET_ENDPOINT"] = self.connections_endpoint
        merged["WEBSOCKET_URL"] = f"ws://127.0.0.1:{self.ws_port}/"  # what /playground connects to
        if self.chaos is not None:
            merged.update(self.chaos.environment())
        return merged

    def _start_chaos(self) -> None:
        """The chaos profile's AWS-side faults: a short visibility timeout, throttled DynamoDB."""
        if self.chaos is None:
            return
        from promptsvc.adapters.clients import client

        from promptsvc_dev.chaos import install_throttling

        assert self.stack is not None
        from promptsvc_dev.sqs_source import consumer_queues

        for queue in consumer_queues(self.stack):  # both lanes
            client("sqs").set_queue_attributes(
                QueueUrl=queue, Attributes={"VisibilityTimeout": str(self.chaos.visibility)}
            )
        if self.chaos.throttle:
            install_throttling(self.chaos.throttle, self.chaos.seed)

    def _bootstrap_admin_key(self) -> None:
        from promptsvc import wiring
        from promptsvc.settings import get_settings

        key = self.options.api_key or os.environ.get("PROMPTSVC_API_KEY")
        if not key:
            key, _ = generate_key()
            self.generated_key = True
        wiring.key_service(get_settings()).bootstrap(key, "admin", Role.ADMIN)
        self.admin_key = key

    def _start_consumer(self) -> None:
        from promptsvc_dev.functions import load_handler_module
        from promptsvc_dev.schedule_source import ScheduleSource, rate_seconds
        from promptsvc_dev.sqs_source import SqsEventSource, consumer_queues

        assert self.stack is not None
        if self.chaos is None:
            consumer = load_handler_module(self.root, "consumer")
            # One source feeding the consumer from both lanes' queues (the template's SQS events).
            self.event_sources = [SqsEventSource(consumer_queues(self.stack), consumer.lambda_handler)]
        else:
            self.event_sources = self._chaos_consumers()
        self.event_source = self.event_sources[0]
        for source in self.event_sources:
            source.start()
        sweep = self.stack.template["Resources"]["DeadLetterFunction"]["Properties"]["Events"]["Sweep"]
        sweeper = load_handler_module(self.root, "deadletter")
        period = rate_seconds(sweep["Properties"]["ScheduleExpression"])
        if self.chaos is not None and self.chaos.sweep:
            period = self.chaos.sweep
        self.schedules = [ScheduleSource(sweeper.lambda_handler, period, function_name="DeadLetterFunction")]
        for schedule in self.schedules:
            schedule.start()

    def _start_async_endpoint(self) -> None:
        """With `--engine sagemaker-async`: the local async endpoint, writing to the template's
        bucket and publishing to its topics."""
        if self.options.engine != "sagemaker-async":
            return
        from promptsvc_dev.async_endpoint import AsyncEndpoint

        assert self.stack is not None
        refs = self.stack.refs
        delay = (self.options.mock_chunk_delay or 0.0) * 4  # as long as the mock's four chunks
        self.async_endpoint = AsyncEndpoint(
            refs["AsyncInferenceBucket"], refs["AsyncSuccessTopic"], refs["AsyncErrorTopic"], delay=delay
        ).start()

    def _start_settle(self) -> None:
        """functions/settle/app.py, fed what the async endpoints' topics publish."""
        from promptsvc_dev.functions import load_handler_module
        from promptsvc_dev.sns_source import sns_event_source

        assert self.stack is not None
        if "SettleFunction" not in self.stack.template["Resources"]:
            return
        settle = load_handler_module(self.root, "settle")
        source = sns_event_source(self.stack, "SettleFunction", settle.lambda_handler)
        source.start()
        self.event_sources.append(source)

    def _chaos_consumers(self) -> list[Any]:
        """Concurrent consumer invocations (each its own module, as each Lambda instance is its own
        process), with a short function timeout and no lease margin, so a killed consumer's lease
        runs out within `lease` seconds; the SQS source sends duplicates."""
        from promptsvc_dev.chaos import DuplicateDeliveries
        from promptsvc_dev.functions import load_handler_module
        from promptsvc_dev.sqs_source import SqsEventSource, consumer_queues

        assert self.stack is not None and self.chaos is not None
        duplicates = DuplicateDeliveries(self.chaos.dup, self.chaos.seed) if self.chaos.dup else None
        sources = []
        for _ in range(max(1, self.chaos.consumers)):
            consumer = load_handler_module(self.root, "consumer")
            vars(consumer)["LEASE_MARGIN_SECONDS"] = 0
            source = SqsEventSource(
                consumer_queues(self.stack),
                consumer.lambda_handler,
                timeout_seconds=self.chaos.lease,
                on_receive=duplicates,
            )
            sources.append(source)
        return sources

    def _start_thread_streams(self) -> None:
        """The WebSocket API in front of functions/ws; the events table's stream feeding functions/stream."""
        from promptsvc_dev.functions import load_handler_module
        from promptsvc_dev.stream_source import DynamoStreamSource

        assert self.stack is not None
        missing = [f"functions/{name}/app.py" for name in ("ws", "stream")]
        missing = [path for path in missing if not (self.root / path).is_file()]
        if missing:
            self.streams_off = f"off: {' and '.join(missing)} missing"
        try:
            from promptsvc_dev.ws_gateway import WebSocketGateway
        except ImportError as error:
            self.streams_off = f"off: {error.name} is not installed (pip install -e '.[local]')"
        if self.streams_off:
            print(f"promptsvc dev: the WebSocket API is {self.streams_off}", file=sys.stderr, flush=True)
            return
        ws = load_handler_module(self.root, "ws")
        faults = None
        if self.chaos is not None and (self.chaos.gone or self.chaos.drop):
            from promptsvc_dev.chaos import ConnectionFaults

            faults = ConnectionFaults(self.chaos.gone, self.chaos.drop, self.chaos.seed).next
        self.gateway = WebSocketGateway.from_template(
            self.stack.template,
            ws.lambda_handler,
            port=self.ws_port,
            callback_port=self.callback_port,
            faults=faults,
        )
        self.gateway.start()
        events = self.stack.template["Resources"]["StreamFunction"]["Properties"]["Events"]["ThreadEvents"]
        stream = load_handler_module(self.root, "stream")
        self.stream_source = DynamoStreamSource.from_event_properties(
            self.stack.refs["ThreadEventsTable"],
            stream.lambda_handler,
            events["Properties"],
            on_failure_queue_url=self.stack.refs.get("StreamFailuresQueue"),
        )
        self.stream_source.start(events["Properties"].get("StartingPosition", "LATEST"))

    def _write_state(self, moto_port: int) -> None:
        assert self.stack is not None
        state = {
            "endpoint": f"http://127.0.0.1:{moto_port}",
            "region": REGION,
            "api": f"http://{self.options.host}:{self.options.port}",
            "websocket": f"ws://127.0.0.1:{self.ws_port}/",
            "connections": self.connections_endpoint,
            "keysTable": self.stack.refs["ApiKeysTable"],
            "pid": os.getpid(),
            # What a function needs to run beside this stack, against its moto (names, no secrets).
            "environment": {
                **aws_environment(f"http://127.0.0.1:{moto_port}"),
                **self._function_environment(),
            },
        }
        path = state_path(self.root)
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(state, indent=2))

    def serve(self) -> None:
        """Serve the API until Ctrl-C (uvicorn handles SIGINT/SIGTERM), then stop everything."""
        import uvicorn
        from promptsvc.api.app import create_app

        config = uvicorn.Config(
            create_app(docs=True),  # /openapi.json and /docs (Swagger UI)
            host=self.options.host,
            port=self.options.port,
            log_level="warning",
            lifespan="off",
            # The socket-level bounds API Gateway sets in AWS (the app bounds bodies itself): h11,
            # whatever else is installed; request line and headers at most 16 KB (a 400 past that);
            # an idle keep-alive connection closed after 5 s.
            http="h11",
            h11_max_incomplete_event_size=MAX_HEADER_BYTES,
            timeout_keep_alive=5,
        )
        server = uvicorn.Server(config)
        threading.Thread(target=self._announce, args=(server,), daemon=True).start()
        try:
            server.run()
        finally:
            self.stop()

    def _announce(self, server: Any) -> None:
        while not server.started:
            time.sleep(0.05)
            if server.should_exit:
                return
        origin = f"http://{self.options.host}:{self.options.port}"
        assert self.moto is not None
        lines = [
            "promptsvc dev is ready",
            f"  API        {origin}/prompt-svc/",
            f"  playground {origin}/playground  (docs/playground.md)",
            f"  WebSocket  ws://127.0.0.1:{self.ws_port}/?token=KEY"
            + (f"  ({self.streams_off})" if self.streams_off else ""),
            *([] if self.streams_off else [f"  callback   {self.connections_endpoint}  (@connections)"]),
            f"  AWS (moto) {os.environ['AWS_ENDPOINT_URL']}",
            f"  engine     {self.options.engine or 'per model catalog'}",
            *([f"  chaos      {self.chaos.describe()}"] if self.chaos is not None else []),
            f"  admin key  {self.admin_key}"
            + ("  (generated; pass --api-key to choose one)" if self.generated_key else ""),
            "For the Python SDK and the CLI (promptsvc prompt, prompts, thread; docs/client.md):",
            f"export PROMPTSVC_URL={origin}",
            f"export PROMPTSVC_API_KEY={self.admin_key}",
            f"export PROMPTSVC_WS_URL=ws://127.0.0.1:{self.ws_port}/",
            "Ctrl-C stops everything.",
        ]
        print("\n".join(lines), flush=True)

    def stop(self) -> None:
        if self.moto is None:
            return
        if self.gateway is not None:  # first: its $disconnect calls still reach moto
            self.gateway.stop()
            self.gateway = None
        if self.stream_source is not None:
            self.stream_source.stop()
            self.stream_source = None
        for source in self.event_sources:
            source.stop()
        self.event_sources = []
        if self.async_endpoint is not None:
            self.async_endpoint.stop()
            self.async_endpoint = None
        self.event_source = None
        for schedule in self.schedules:
            schedule.stop()
        self.schedules = []
        if self.moto is not None:
            self.moto.stop()
            self.moto = None
        state_path(self.root).unlink(missing_ok=True)
        if self.chaos is not None:
            from promptsvc_dev.chaos import summary

            print(f"promptsvc dev chaos: {summary()}", file=sys.stderr, flush=True)
        print("promptsvc dev stopped", file=sys.stderr, flush=True)


def run(options: DevOptions) -> None:
    stack = DevStack(options)
    try:
        stack.start()
        stack.serve()
    except KeyboardInterrupt:
        # uvicorn shuts down on Ctrl-C, then re-raises the signal; everything is already stopped.
        stack.stop()


def state_path(checkout: Path) -> Path:
    """Where `promptsvc dev` says where it listens: `$PROMPTSVC_DEV_STATE`, else in the checkout."""
    chosen = os.environ.get("PROMPTSVC_DEV_STATE")
    return Path(chosen) if chosen else checkout / STATE_FILE


def read_state(root: Path | None = None) -> dict[str, Any] | None:
    """Where a running `promptsvc dev` of this checkout listens, if one does."""
    try:
        return json.loads(state_path(find_template(root).parent).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
