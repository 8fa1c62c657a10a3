"""What `Client` and `AsyncClient` share about the wire: headers, timeouts, paging sizes and how a
refused WebSocket handshake reads."""

import json

from websockets.exceptions import InvalidStatus

from promptsvc.client.config import ClientConfig
from promptsvc.client.errors import ApiError

DEFAULT_TIMEOUT = 40.0  # seconds: over the API's sync wait (25 s)
WS_OPEN_TIMEOUT = 20.0
POLL_MIN, POLL_MAX = 0.25, 2.0  # wait_prompt's backoff between reads


def headers(config: ClientConfig) -> dict[str, str]:
    return {"Authorization": f"Bearer {config.api_key}"}


def page_limit(page_size: int, limit: int | None, yielded: int) -> int:
    """The next page's size: no more than the caller still wants."""
    return page_size if limit is None else max(1, min(page_size, limit - yielded))


def handshake_error(refused: InvalidStatus) -> ApiError | InvalidStatus:
    """An ApiError to raise (401: a missing or unknown key, any other 4xx), or, for 429 and 5xx,
    the refusal itself: worth connecting again."""
    response = refused.response
    if response.status_code == 429 or response.status_code >= 500:
        return refused
    text = response.body.decode("utf-8", "replace").strip() if response.body else ""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message") or body.get("error"), str):
        text = body.get("message") or body["error"]
    return ApiError(response.status_code, text or "the WebSocket API refused the connection")
