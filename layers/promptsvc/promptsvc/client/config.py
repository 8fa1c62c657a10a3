"""Where the service is and which key to use: arguments first, then PROMPTSVC_URL,
PROMPTSVC_API_KEY and PROMPTSVC_WS_URL (`promptsvc dev` prints the three as `export` lines)."""

import os
from dataclasses import dataclass

URL_VARIABLE = "PROMPTSVC_URL"
KEY_VARIABLE = "PROMPTSVC_API_KEY"
WS_URL_VARIABLE = "PROMPTSVC_WS_URL"


@dataclass(frozen=True)
class ClientConfig:
    url: str  # the HTTP API's origin, e.g. http://127.0.0.1:8080 (the stack's HttpApiUrl)
    api_key: str
    ws_url: str | None  # the WebSocket API, e.g. ws://127.0.0.1:8081/ (the stack's WebSocketUrl)

    @classmethod
    def resolve(
        cls, url: str | None = None, api_key: str | None = None, ws_url: str | None = None
    ) -> "ClientConfig":
        url = url or os.environ.get(URL_VARIABLE)
        api_key = api_key or os.environ.get(KEY_VARIABLE)
        ws_url = ws_url or os.environ.get(WS_URL_VARIABLE) or None
        if not url:
            raise ValueError(f"no API URL: pass url= or set {URL_VARIABLE}")
        if not api_key:
            raise ValueError(f"no API key: pass api_key= or set {KEY_VARIABLE}")
        return cls(url.rstrip("/"), api_key, ws_url)

    def require_ws_url(self) -> str:
        if not self.ws_url:
            raise ValueError(f"no WebSocket URL for thread streams: pass ws_url= or set {WS_URL_VARIABLE}")
        return self.ws_url
