"""Request and response models of the seed client's last two calls (api/seed_routes.py):
`promptTypes` and `subscribeToPromptResponses` (`PromptSvcTypesResponse`, `PromptSvcStreamChunk`)."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from promptsvc.domain.status import Status
from promptsvc.domain.thread_events import REMOVED


class PromptTypesRequest(BaseModel):
    """Any JSON object (the client sends one; nothing in it is read)."""

    model_config = ConfigDict(extra="allow")


class StreamChunk(BaseModel):
    """The `data` of one Server-Sent Event of a responses subscription (`PromptSvcStreamChunk`)."""

    messageId: str = Field(description="the prompt's id (its answer's `responseMessage.id`)")
    text: str = Field(description="`progress`: more of the answer; `done`: empty")
    type: Literal["progress", "done"]
    reset: bool | None = Field(
        None, description="`progress` only: a retry starts the answer again, drop this message's text so far"
    )
    status: Status | Literal[REMOVED] | None = Field(  # type: ignore[valid-type]
        None, description="`done` only: how the prompt ended (completed, abandoned, canceled, removed)"
    )
    error: str | None = Field(None, description="`done` only: why it did not complete, when it says")


class PromptTypes(BaseModel):
    """What the service generates, in the seed client's words (`PromptSvcPromptType`)."""

    promptTypes: list[str] = Field(description="the prompt types the model catalog serves: `Text-to-Text`")
    chunkTypes: list[Literal["progress", "done"]] = Field(
        description="the `type`s of a responses subscription's chunks"
    )
    chunk: StreamChunk | None = Field(
        None, description="never sent: documents a subscription chunk's type, as the seed API's `chunk` does"
    )
