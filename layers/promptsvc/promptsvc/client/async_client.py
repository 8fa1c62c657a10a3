"""`AsyncClient`: `Client`'s calls, async (httpx.AsyncClient; websockets' asyncio client)."""

import asyncio
import json
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from promptsvc.client import calls
from promptsvc.client.config import ClientConfig
from promptsvc.client.errors import ApiError
from promptsvc.client.models import (
    ApiKey,
    KeyLimits,
    Models,
    NewApiKey,
    Prompt,
    RegistryPrompt,
    RegistryVersion,
    ThreadEvent,
    Usage,
)
from promptsvc.client.retry import Repeat, RetryPolicy, retry_after
from promptsvc.client.stream import Ending, Gap, Reconnects, ThreadCursor, Until
from promptsvc.client.transport import (
    DEFAULT_TIMEOUT,
    POLL_MAX,
    POLL_MIN,
    WS_OPEN_TIMEOUT,
    handshake_error,
    headers,
    page_limit,
)

_sleep = asyncio.sleep  # tests replace it to see the waits without waiting


class AsyncClient:
    """The promptsvc API, async: the calls of `Client` (see there), awaited; the iterators are
    async iterators. Use it as an async context manager, or await aclose()."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        ws_url: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.config = ClientConfig.resolve(url, api_key, ws_url)
        self.retry = retry or RetryPolicy()
        self._http = httpx.AsyncClient(
            base_url=self.config.url,
            headers=headers(self.config),
            timeout=httpx.Timeout(timeout, connect=10.0),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _send(self, call: calls.Call) -> Any:
        retry = 0
        while True:
            try:
                response = await self._http.request(
                    call.method, call.path, params=call.params, json=call.body
                )
            except httpx.TransportError as error:
                unsent = isinstance(error, httpx.ConnectError)
                if retry >= self.retry.max_retries or not (unsent or call.repeat is Repeat.SAFE):
                    raise
                await _sleep(self.retry.delay(retry))
                retry += 1
                continue
            if retry < self.retry.max_retries and self.retry.retries(response.status_code, call.repeat):
                await _sleep(self.retry.delay(retry, retry_after(response)))
                retry += 1
                continue
            return calls.json_of(response)

    # -- prompts ---------------------------------------------------------------------------------

    async def add_prompt(
        self,
        prompt: str,
        model_id: str | None = None,
        thread_id: str | None = None,
        sync: bool = False,
        *,
        prompt_id: str | None = None,
        max_retries: int | None = None,
        template: str | None = None,
    ) -> Prompt:
        call = calls.add_prompt(
            prompt, model_id=model_id, thread_id=thread_id, sync=sync, prompt_id=prompt_id,
            max_retries=max_retries, template=template,
        )  # fmt: skip
        return Prompt.from_response(await self._send(call))

    async def get_prompt(self, prompt_id: str, user_id: str | None = None) -> Prompt:
        return Prompt.from_response(await self._send(calls.get_prompt(prompt_id, user_id)))

    async def wait_prompt(self, prompt_id: str, user_id: str | None = None) -> Prompt:
        pause = POLL_MIN
        while not (prompt := await self.get_prompt(prompt_id, user_id)).terminal:
            await _sleep(pause)
            pause = min(POLL_MAX, pause * 2)
        return prompt

    async def cancel_prompt(self, prompt_id: str, user_id: str | None = None) -> Prompt:
        return Prompt.from_response(await self._send(calls.cancel_prompt(prompt_id, user_id)))

    async def remove_prompt(self, prompt_id: str, user_id: str | None = None) -> None:
        await self._send(calls.remove_prompt(prompt_id, user_id))

    async def list_prompts(
        self,
        status: str | None = None,
        thread_id: str | None = None,
        limit: int | None = None,
        *,
        page_size: int = calls.PAGE_SIZE,
    ) -> AsyncIterator[Prompt]:
        after: str | None = None
        yielded = 0
        while limit is None or yielded < limit:
            size = page_limit(page_size, limit, yielded)
            page = await self._send(
                calls.list_prompts(status=status, thread_id=thread_id, page_size=size, after=after)
            )
            for item in page["prompts"][: None if limit is None else limit - yielded]:
                yielded += 1
                yield Prompt.model_validate(item)
            after = page.get("after")
            if not after:
                return

    async def models(self) -> Models:
        return Models.model_validate(await self._send(calls.models()))

    async def usage(
        self,
        first: str | None = None,
        last: str | None = None,
        group_by: str = "day",
        user_id: str | None = None,
    ) -> Usage:
        """As `Client.usage`."""
        return Usage.model_validate(await self._send(calls.usage(first, last, group_by, user_id)))

    # -- thread events ---------------------------------------------------------------------------

    async def thread_events(
        self, thread_id: str, after: int = 0, user_id: str | None = None
    ) -> AsyncIterator[ThreadEvent]:
        while True:
            page = await self._send(calls.thread_events(thread_id, after, user_id=user_id))
            if not page["events"]:
                return
            for item in page["events"]:
                yield ThreadEvent.model_validate(item)
            after = int(page["after"])

    async def last_seq(self, thread_id: str, user_id: str | None = None) -> int:
        last = 0
        async for event in self.thread_events(thread_id, 0, user_id):
            last = event.seq
        return last

    async def stream_thread(
        self,
        thread_id: str,
        after: int | None = 0,
        until: Until = None,
        *,
        prompt_id: str | None = None,
        user_id: str | None = None,
    ) -> AsyncIterator[ThreadEvent]:
        ending = None
        if until == "terminal":
            target = await self._target(thread_id, prompt_id, user_id)
            ending = Ending(target.id if target else None)
            if target is not None and target.terminal:
                if after is None:
                    return
                async for event in self.thread_events(thread_id, after, user_id):
                    yield event
                    if ending.reached(event):
                        return
                return
        async for event in self._stream(ThreadCursor(thread_id, after, user_id), ending):
            yield event

    async def _target(self, thread_id: str, prompt_id: str | None, user_id: str | None) -> Prompt | None:
        if prompt_id is not None:
            return await self.get_prompt(prompt_id, user_id)
        async for prompt in self.list_prompts(thread_id=thread_id, limit=1):
            return prompt
        return None

    async def _stream(self, cursor: ThreadCursor, ending: Ending | None) -> AsyncIterator[ThreadEvent]:
        reconnects = Reconnects()
        while True:
            try:
                async with connect(
                    self.config.require_ws_url(), additional_headers=headers(self.config),
                    open_timeout=WS_OPEN_TIMEOUT, close_timeout=2,
                ) as socket:  # fmt: skip
                    await socket.send(cursor.subscribe_message())
                    async for raw in socket:
                        frame = json.loads(raw)
                        if frame.get("type") == "subscribed":
                            reconnects.subscribed()
                        event = cursor.accept(frame)
                        if event is None:
                            continue
                        reconnects.delivered()
                        yield event
                        if ending is not None and ending.reached(event):
                            return
                error: BaseException = ConnectionError("the server closed the thread stream")
            except InvalidStatus as refused:
                error = handshake_error(refused)
                if isinstance(error, ApiError):
                    raise error from refused
            except (ConnectionClosed, OSError, Gap) as dropped:
                error = dropped
            await _sleep(reconnects.delay_after(error))

    # -- API keys (/prompt-svc/keys) ---------------------------------------------------------------

    async def create_key(
        self,
        user_id: str,
        role: str = "user",
        *,
        expires_at: str | None = None,
        allowed_models: list[str] | None = None,
        limits: KeyLimits | None = None,
    ) -> NewApiKey:
        """An admin makes a key for `user_id`; its secret (`.key`) is shown only here. `expires_at`:
        RFC 3339; `allowed_models`: the catalog models its prompts may use (None: all); `limits`:
        its own limits (a limit left None: the deployment's default)."""
        call = calls.create_key(user_id, role, expires_at, allowed_models, calls.key_limits(limits))
        return NewApiKey.model_validate(await self._send(call))

    async def list_keys(self, user_id: str | None = None, limit: int | None = None) -> AsyncIterator[ApiKey]:
        """Your keys, or (an admin) every key or `user_id`'s, page after page: at most `limit`."""
        after: str | None = None
        yielded = 0
        while limit is None or yielded < limit:
            page = await self._send(
                calls.list_keys(user_id, page_limit(calls.KEYS_PAGE_SIZE, limit, yielded), after)
            )
            for item in page["keys"][: None if limit is None else limit - yielded]:
                yielded += 1
                yield ApiKey.model_validate(item)
            after = page.get("after")
            if not after:
                return

    async def rotate_key(self, key_id: str, grace_seconds: int | None = None) -> NewApiKey:
        """A new secret for the key (shown only here); the current one keeps working for
        `grace_seconds` (the server's default: an hour; at most 7 days)."""
        return NewApiKey.model_validate(await self._send(calls.rotate_key(key_id, grace_seconds)))

    async def update_key(
        self,
        key_id: str,
        *,
        expires_at: str | calls.Keep | None = calls.KEEP,
        allowed_models: list[str] | calls.Keep | None = calls.KEEP,
        limits: KeyLimits | calls.Keep | None = calls.KEEP,
    ) -> ApiKey:
        """An admin changes a key (its secret stays): `expires_at` (RFC 3339; None: never),
        `allowed_models` (None: every model), `limits` (the limits set on it, a limit set to None
        back to the deployment's default; None: every limit back). What is not passed is kept."""
        return ApiKey.model_validate(
            await self._send(calls.update_key(key_id, expires_at, allowed_models, limits))
        )

    async def revoke_key(self, key_id: str) -> None:
        await self._send(calls.revoke_key(key_id))

    # -- the registry (/v2/prompts) --------------------------------------------------------------

    async def registry_create(self, entity: dict[str, Any]) -> RegistryPrompt:
        return RegistryPrompt.model_validate(await self._send(calls.registry_create(entity)))

    async def registry_get(self, prompt_id: str) -> RegistryPrompt:
        return RegistryPrompt.model_validate(await self._send(calls.registry_get(prompt_id)))

    async def registry_list(self, limit: int | None = None) -> AsyncIterator[RegistryPrompt]:
        async for item in self._registry_pages(lambda size, last: calls.registry_list(size, last), limit):
            yield RegistryPrompt.model_validate(item)

    async def registry_versions(
        self, prompt_id: str, limit: int | None = None
    ) -> AsyncIterator[RegistryVersion]:
        pages = self._registry_pages(lambda size, last: calls.registry_versions(prompt_id, size, last), limit)
        async for item in pages:
            yield RegistryVersion.model_validate(item)

    async def _registry_pages(self, call: calls.PageCall, limit: int | None) -> AsyncIterator[dict[str, Any]]:
        last: str | None = None
        yielded = 0
        while limit is None or yielded < limit:
            page = await self._send(call(page_limit(calls.REGISTRY_PAGE_SIZE, limit, yielded), last))
            for item in page["data"]:
                yielded += 1
                last = item["_id"]
                yield item
            if not page.get("has_more") or not page["data"]:
                return
