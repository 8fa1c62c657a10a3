"""ECS task scale-in protection, through the ECS agent's endpoint in the task (`$ECS_AGENT_URI`).

While a worker has prompts in flight it asks ECS not to pick its task when scaling in; when it
is idle it lets go. Scale-in then takes idle tasks, and a task that is stopped anyway (a
deployment) still drains on SIGTERM.
"""

import os
import time
from collections.abc import Callable

import httpx
from aws_lambda_powertools import Logger

logger = Logger(child=True)

PROTECTION_MINUTES = 120  # renewed at half-time while the worker stays busy


class TaskProtection:
    def __init__(
        self,
        agent_uri: str,
        *,
        http: httpx.AsyncClient | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = agent_uri.rstrip("/") + "/task-protection/v1/state"
        self._http = http
        self._monotonic = monotonic
        self._state: bool | None = None
        self._renew_at = 0.0

    @classmethod
    def from_environment(cls) -> "TaskProtection | None":
        uri = os.environ.get("ECS_AGENT_URI")
        return cls(uri) if uri else None

    async def set(self, protected: bool) -> None:
        """Idempotent and cheap to call often: talks to the agent only on a change, or to renew
        a protection past half its lifetime."""
        if protected == self._state and not (protected and self._monotonic() >= self._renew_at):
            return
        body: dict[str, object] = {"ProtectionEnabled": protected}
        if protected:
            body["ExpiresInMinutes"] = PROTECTION_MINUTES
        try:
            async with httpx.AsyncClient(timeout=5) if self._http is None else _borrowed(self._http) as http:
                response = await http.put(self._url, json=body)
            response.raise_for_status()
            self._state = protected
            self._renew_at = self._monotonic() + PROTECTION_MINUTES * 60 / 2
        except httpx.HTTPError as error:
            # Protection is an optimisation of scale-in; the drain on SIGTERM is the guarantee.
            logger.warning("could not set task scale-in protection", protected=protected, error=str(error))


class _borrowed:
    """Use a client someone else owns without closing it."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    async def __aenter__(self) -> httpx.AsyncClient:
        return self._http

    async def __aexit__(self, *_: object) -> None:
        return None
