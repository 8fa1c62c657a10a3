"""What the SDK raises."""


class ApiError(Exception):
    """The API answered an error: its HTTP status and the server's message (`error` on /prompt-svc,
    `message` on /v2/prompts)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(f"{status_code}: {message}")
        self.status_code = status_code
        self.message = message


class StreamError(Exception):
    """A thread stream failed for good: an error frame from the WebSocket API (e.g. the key was
    revoked), or the connection kept dropping past the reconnect limit."""
