"""The prompt entity and the pure rules for creating one."""

import hashlib
import json
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime

from promptsvc.domain.status import Status

MAX_PROMPT_BYTES = 256 * 1024
DEFAULT_MAX_RETRIES = 10
MAX_MAX_RETRIES = 100


PUBLIC_FIELDS = (
    "id",
    "prompt",
    "modelId",
    "template",
    "threadId",
    "userId",
    "status",
    "runCount",
    "maxRetries",
    "lastRun",
    "error",
    "sync",
    "createdAt",
    "updatedAt",
)
# Ids chosen by clients end up inside composite index keys joined with '#': keep them plain.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"


def public_view(data: "dict | Prompt") -> dict:
    """A prompt as the API shows it: exactly the spec's schema fields."""
    source = asdict(data) if isinstance(data, Prompt) else data
    view = {name: source.get(name) for name in PUBLIC_FIELDS}
    view["status"] = str(view["status"])
    return view


def now_rfc3339(clock: datetime | None = None) -> str:
    """Fixed-width RFC 3339 UTC time (microseconds, `Z`), so string order is time order."""
    moment = clock or datetime.now(UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


@dataclass(frozen=True)
class Prompt:
    """A queued prompt. Field names are the wire names of the spec's schema."""

    id: str
    prompt: str
    modelId: str
    template: str
    threadId: str
    userId: str
    status: Status = Status.SCHEDULED
    runCount: int = 0
    maxRetries: int = DEFAULT_MAX_RETRIES
    lastRun: str = ""
    error: str = ""
    sync: bool = False
    createdAt: str = ""
    updatedAt: str = ""
    answer: str = ""
    requestHash: str = field(default="", compare=False)
    # Consumer bookkeeping, not part of the public schema:
    leaseUntil: int = 0  # epoch milliseconds until which the consumer running it holds it
    crashCount: int = 0  # runs that ended with the consumer gone (lease expired while running)

    @property
    def sort_key(self) -> str:
        """Unique, time-ordered position of the prompt: what indexes sort on and cursors hold."""
        return f"{self.createdAt}#{self.id}"

    def with_status(self, status: Status, **changes: object) -> "Prompt":
        return replace(self, status=status, **changes)


@dataclass(frozen=True)
class NewPrompt:
    """What an add-prompt request asks for, after validation and defaulting."""

    prompt: str
    modelId: str
    template: str
    threadId: str
    maxRetries: int
    sync: bool
    id: str


def request_hash(user_id: str, new: NewPrompt) -> str:
    """Fingerprint of an add request, to tell an idempotent re-add from a conflicting one.

    `sync` is left out: re-sending the same prompt to wait for it is the same request.
    """
    body = {
        "userId": user_id,
        "prompt": new.prompt,
        "modelId": new.modelId,
        "template": new.template,
        "threadId": new.threadId,
        "maxRetries": new.maxRetries,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def create_prompt(user_id: str, new: NewPrompt, clock: datetime | None = None) -> Prompt:
    stamp = now_rfc3339(clock)
    return Prompt(
        id=new.id,
        prompt=new.prompt,
        modelId=new.modelId,
        template=new.template,
        threadId=new.threadId,
        userId=user_id,
        status=Status.SCHEDULED,
        maxRetries=new.maxRetries,
        sync=new.sync,
        createdAt=stamp,
        updatedAt=stamp,
        requestHash=request_hash(user_id, new),
    )
