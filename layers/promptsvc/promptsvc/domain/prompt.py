"""The prompt entity and the pure rules for creating one."""

import hashlib
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypedDict

import msgspec
from msgspec.structs import replace

from promptsvc.domain.clock import now_rfc3339
from promptsvc.domain.names import composite
from promptsvc.domain.status import Status

if TYPE_CHECKING:  # routing is imported where a plan is read: the stream and ws functions never do
    from promptsvc.domain.routing import RunPlan

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
    # Beyond the spec's schema: the stored prompt a run came from, and the model that answered
    # (routing may fall back to another model than `modelId`).
    "promptConfigId",
    "promptConfigVersion",
    "answeredBy",
    # Usage (domain/usage.py), set when the prompt completes: the answering run's tokens, its
    # finish reason (`cached`: from the response cache), and whether a count was estimated.
    "promptTokens",
    "completionTokens",
    "finishReason",
    "usageEstimated",
)


class RunState(msgspec.Struct, frozen=True):
    """The part of a stored prompt a running consumer watches: has it been canceled or re-run?"""

    status: Status
    runCount: int


def public_view(data: "dict[str, Any] | Prompt") -> dict[str, Any]:
    """A prompt as the API shows it: exactly the spec's schema fields."""
    source = msgspec.structs.asdict(data) if isinstance(data, Prompt) else data
    view = {name: source.get(name) for name in PUBLIC_FIELDS}
    view["status"] = str(view["status"])
    return view


class PromptChanges(TypedDict, total=False):
    """The fields a lifecycle write (a transition or a conditional update) may set besides the
    status: the type checker checks every call, and the store refuses any other name
    (`check_changes`), so a misspelt field cannot become a new attribute."""

    updatedAt: str
    lastRun: str
    error: str
    answer: str
    answerRef: str
    answeredBy: str
    leaseUntil: int
    crashCount: int
    routeIndex: int
    routeStart: int
    promptTokens: int
    completionTokens: int
    finishReason: str
    usageEstimated: bool


CHANGEABLE_FIELDS = frozenset(PromptChanges.__annotations__)


def check_changes(changes: dict[str, Any]) -> None:
    """ValueError naming the fields a lifecycle write may not set."""
    unknown = sorted(set(changes) - CHANGEABLE_FIELDS)
    if unknown:
        raise ValueError(f"not changeable prompt fields: {', '.join(unknown)}")


class Prompt(msgspec.Struct, frozen=True):
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
    # The answer was too large for the item: it is in the answers bucket under this key
    # (domain.answers), and `answer` is empty in the table. Services resolve it before returning.
    answerRef: str = ""
    promptConfigId: str = ""  # run from this stored prompt (/v2/prompts) ...
    promptConfigVersion: str = ""  # ... at this version
    answeredBy: str = ""  # the model whose answer this is
    promptTokens: int = 0  # usage of the answering run (domain/usage.py)
    completionTokens: int = 0
    finishReason: str = ""
    usageEstimated: bool = False
    requestHash: str = ""  # the add request's fingerprint (request_hash); compared like every field
    plan: str = ""  # a routed prompt's RunPlan, as JSON; empty: one model, retried on its own
    # Consumer bookkeeping, not part of the public schema:
    leaseUntil: int = 0  # epoch milliseconds until which the consumer running it holds it
    crashCount: int = 0  # runs that ended with the consumer gone (lease expired while running)
    routeIndex: int = 0  # a routed prompt: the model of the plan being tried ...
    routeStart: int = 0  # ... since this many runs (its attempts are runCount - routeStart)
    # The API key whose in-flight slot the prompt holds (domain/limits.py): set only when the
    # deployment keeps limits; its terminal transition gives the slot back, in the same transaction.
    keyId: str = ""
    # Its lane (domain/lanes.py): "fast" holds a slot of its user's fast lane until its terminal
    # transition gives it back (in the same transaction), "bulk" none; "": lanes are off.
    lane: str = ""

    @property
    def sort_key(self) -> str:
        """Unique, time-ordered position of the prompt: what indexes sort on and cursors hold."""
        return composite(self.createdAt, self.id)

    def with_status(self, status: Status, **changes: Any) -> "Prompt":
        return replace(self, status=status, **changes)

    @property
    def run_plan(self) -> "RunPlan | None":
        from promptsvc.domain.routing import RunPlan

        return RunPlan.from_json(self.plan) if self.plan else None


class NewPrompt(msgspec.Struct, frozen=True):
    """What an add-prompt request asks for, after validation and defaulting."""

    prompt: str
    modelId: str
    template: str
    threadId: str
    maxRetries: int
    sync: bool
    id: str
    promptConfigId: str = ""
    promptConfigVersion: str = ""  # the version run (the current one when none was asked for)
    plan: "RunPlan | None" = None
    # What the caller asked for, as opposed to what was made of it (a generated thread id, a load
    # balancer's pick): re-sending the same request must find the same fingerprint.
    fingerprint: dict[str, Any] = msgspec.field(default_factory=dict)


def request_hash(user_id: str, new: NewPrompt) -> str:
    """Fingerprint of an add request, to tell an idempotent re-add from a conflicting one.

    `sync` is left out: re-sending the same prompt to wait for it is the same request.
    """
    body: dict[str, Any] = dict(new.fingerprint) or {
        "prompt": new.prompt,
        "modelId": new.modelId,
        "template": new.template,
        "threadId": new.threadId,
        "maxRetries": new.maxRetries,
    }
    body["userId"] = user_id
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
        promptConfigId=new.promptConfigId,
        promptConfigVersion=new.promptConfigVersion,
        plan=new.plan.to_json() if new.plan else "",
    )


class Claim(msgspec.Struct, frozen=True):
    """What a claim's write came to: the prompt it claimed, or, refused, the prompt as it found
    it (`found`; None: not known, read it)."""

    claimed: Prompt | None
    found: Prompt | None = None
