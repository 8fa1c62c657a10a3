"""A spinner on stderr while the CLI waits, only when both stdout and stderr are a terminal."""

import sys
import threading
from types import TracebackType

FRAMES = "|/-\\"
INTERVAL = 0.1


class Spinner:
    def __init__(self, label: str) -> None:
        self._label = label
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def wanted() -> bool:
        return sys.stdout.isatty() and sys.stderr.isatty()

    def start(self) -> "Spinner":
        if self._thread is None and self.wanted():
            self._thread = threading.Thread(target=self._spin, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop and clear the line; idempotent. Returns once nothing more will be drawn."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()

    def _spin(self) -> None:
        frame = 0
        while not self._stop.wait(INTERVAL if frame else 0):
            sys.stderr.write(f"\r{FRAMES[frame % len(FRAMES)]} {self._label}")
            sys.stderr.flush()
            frame += 1

    def __enter__(self) -> "Spinner":
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
