"""The chaos profile of `promptsvc dev` (`--chaos all,seed=7,kill=0.05`): faults AWS and a model
really produce, injected only into the local stack and the mock engine. Every knob is off unless
named (or `all` is given).

- mock engine faults (`error`, `stall`, `cut`, `slow`, `kill`): passed to the mock engine as its
  `MOCK_*` settings (engines/mock.py); `kill` is the consumer dying mid-prompt: the invocation ends
  without settling or deleting anything, the lease stays, the message comes back after its
  visibility timeout;
- `dup`: the SQS event source sends a copy of some messages it receives, half at once (another
  consumer invocation takes it while the first runs) and half some seconds later;
- `throttle`: a botocore `before-send` hook answers some DynamoDB calls with an HTTP 400
  `ThrottlingException` or `ProvisionedThroughputExceededException`, as AWS sends them, so
  botocore's own retries handle them (and give up after their attempts, as against AWS);
- `gone` / `drop`: the local `@connections` API answers some posts 410 `GoneException`, or drops
  the client's connection and answers 410;
- `consumers` concurrent consumer invocations (Lambda runs several), `lease` seconds of a claim's
  lease and `visibility` seconds of the queue's visibility timeout, short so a killed consumer's
  prompt runs again within seconds;
- `sweep` seconds: the sweeper's period and `STRANDED_AFTER_SECONDS` (0, the default: the
  template's minute and five minutes), short so a stranded prompt is re-queued within seconds.

(moto's conditional writes are made atomic, as in DynamoDB, by dev/promptsvc_dev/moto_atomic.py, always: else
duplicate deliveries would report moto's races as the service's.)
"""

import json
import random
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

from botocore.awsrequest import AWSResponse

# What `all` turns on: every fault at once, at rates that leave most attempts clean.
ALL = {
    "error": 0.06,
    "stall": 0.02,
    "cut": 0.05,
    "slow": 0.05,
    "kill": 0.02,
    "dup": 0.1,
    "throttle": 0.1,  # botocore retries 3 times: about 1 call in 10,000 fails
    "gone": 0.03,
    "drop": 0.01,
}
THROTTLING_CODES = ("ThrottlingException", "ProvisionedThroughputExceededException")

# What the profile did, for its summary line when `promptsvc dev` stops.
injected: Counter[str] = Counter()


@dataclass(frozen=True)
class ChaosOptions:
    seed: int = 0
    error: float = 0.0  # mock engine: an error status (MOCK_ERROR_CODES)
    stall: float = 0.0  # mock engine: no chunk past the model's stall timeout
    cut: float = 0.0  # mock engine: the stream breaks after some deltas
    slow: float = 0.0  # mock engine: a slow first token
    kill: float = 0.0  # the consumer dies mid-prompt
    dup: float = 0.0  # SQS delivers a message twice
    throttle: float = 0.0  # DynamoDB answers a call with a throttling error
    gone: float = 0.0  # @connections answers 410
    drop: float = 0.0  # @connections drops the connection
    consumers: int = 3  # concurrent consumer invocations
    # seconds: the consumer's lease (its function timeout, no margin). Short, so a killed
    # consumer's prompt runs again soon, but longer than a renewal takes on this busy local stack
    # (moto serializes every DynamoDB request): a run that cannot renew in time stops.
    lease: float = 10.0
    visibility: int = 5  # seconds: the queue's visibility timeout
    sweep: float = 0.0  # seconds: the sweeper's period and stranded grace (0: the template's)

    @classmethod
    def parse(cls, spec: str) -> "ChaosOptions":
        """`all` and/or `name=value` pairs, comma-separated: `all,seed=7,drop=0`."""
        options = cls()
        types: dict[str, Any] = {f.name: f.type for f in fields(cls)}
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            if part == "all":
                options = replace(options, **ALL)  # type: ignore[arg-type]
                continue
            name, sep, value = part.partition("=")
            if not sep or name not in types:
                known = ", ".join(["all", *types])
                raise ValueError(f"chaos: {part!r} is not name=value with a name among {known}")
            options = replace(options, **{name: types[name](value)})
        return options

    def environment(self) -> dict[str, str]:
        """The functions' settings the profile changes: the mock engine's faults, the sweep."""
        sweep = {"STRANDED_AFTER_SECONDS": str(self.sweep)} if self.sweep else {}
        return {
            **sweep,
            "MOCK_FAULT_SEED": str(self.seed),
            "MOCK_ERROR_RATE": str(self.error),
            "MOCK_STALL_RATE": str(self.stall),
            "MOCK_CUT_RATE": str(self.cut),
            "MOCK_SLOW_FIRST_TOKEN_RATE": str(self.slow),
            "MOCK_KILL_RATE": str(self.kill),
        }

    def describe(self) -> str:
        return ",".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))


class _Rolls:
    """A seeded, thread-safe source of coin flips."""

    def __init__(self, seed: int, name: str) -> None:
        self._rng = random.Random(f"{seed}:{name}")
        self._lock = threading.Lock()

    def hit(self, rate: float) -> bool:
        with self._lock:
            return rate > 0 and self._rng.random() < rate

    def choice(self, values: tuple[Any, ...]) -> Any:
        with self._lock:
            return self._rng.choice(values)

    def randint(self, low: int, high: int) -> int:
        with self._lock:
            return self._rng.randint(low, high)


class _Body:
    """The raw body botocore reads a response from."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


def dynamodb_throttling(rate: float, seed: int = 0) -> Callable[..., AWSResponse | None]:
    """A `before-send.dynamodb` handler answering about `rate` of the calls as a throttled one."""
    rolls = _Rolls(seed, "throttle")

    def before_send(request: Any, **_: Any) -> AWSResponse | None:
        if not rolls.hit(rate):
            return None
        code = rolls.choice(THROTTLING_CODES)
        injected["DynamoDB calls throttled"] += 1
        body = {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": "Rate exceeded (chaos)"}
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": str(uuid.uuid4())}
        return AWSResponse(request.url, 400, headers, _Body(json.dumps(body).encode()))

    return before_send


def install_throttling(rate: float, seed: int = 0) -> None:
    """Throttle DynamoDB calls of every client made from now on (in this process)."""
    from promptsvc.adapters import clients

    clients.register_hook("before-send.dynamodb", dynamodb_throttling(rate, seed))


class DuplicateDeliveries:
    """Sends a copy of some received messages: at once (another invocation takes it concurrently)
    or a few seconds later."""

    def __init__(self, rate: float, seed: int = 0) -> None:
        self._rate = rate
        self._rolls = _Rolls(seed, "dup")

    def __call__(self, sqs: Any, queue_url: str, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            if not self._rolls.hit(self._rate):
                continue
            delay = 0 if self._rolls.hit(0.5) else self._rolls.randint(1, 10)
            sqs.send_message(QueueUrl=queue_url, MessageBody=message["Body"], DelaySeconds=delay)
            injected["duplicate deliveries"] += 1


class ConnectionFaults:
    """Decides, per `@connections` post, whether the local gateway answers 410 or drops the client."""

    def __init__(self, gone: float, drop: float, seed: int = 0) -> None:
        self._gone, self._drop = gone, drop
        self._rolls = _Rolls(seed, "connections")

    def next(self) -> str:
        fault = "drop" if self._rolls.hit(self._drop) else "gone" if self._rolls.hit(self._gone) else ""
        if fault:
            injected[f"@connections posts answered 410 ({fault})"] += 1
        return fault


def summary() -> str:
    return "; ".join(f"{name}: {count}" for name, count in sorted(injected.items())) or "nothing injected"
