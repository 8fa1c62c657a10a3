"""`promptsvc dev` as a subprocess on free ports, ready to be driven over real sockets: what the
end-to-end tests and the benchmarks start. The child gets this process's environment minus any
AWS, Powertools or promptsvc settings (so it is the README's `promptsvc dev`), plus `env`."""

import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from promptsvc_dev.dev import free_port

READY_LINE = "promptsvc dev is ready"


class DevNotReady(RuntimeError):
    """The server exited or did not print its ready line in time; the message holds its output."""


@dataclass
class DevProcess:
    process: subprocess.Popen[str]
    base_url: str  # the HTTP API
    ws_url: str  # the WebSocket API: connect to ws_url + "?token=KEY"
    output: "queue.Queue[str]"  # the server's lines after the ready line

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def child_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    inherited = {
        k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PROMPTSVC_", "POWERTOOLS_"))
    }
    inherited.pop("ENGINE", None)
    return {**inherited, **(env or {})}


def start_dev(
    *flags: str,
    api_key: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    startup_seconds: float = 60.0,
    python: str = sys.executable,
) -> DevProcess:
    """Start `promptsvc dev --api-key KEY FLAGS...` on free ports; DevNotReady if it does not come up."""
    port, ws_port = free_port(), free_port()
    command = [python, "-m", "promptsvc_dev.cli", "dev", "--port", str(port), "--ws-port", str(ws_port),
               "--api-key", api_key, *flags]  # fmt: skip
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=child_environment(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in process.stdout or ():
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + startup_seconds
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if process.poll() is not None:
                break
            continue
        seen.append(line)
        if READY_LINE in line:
            return DevProcess(process, f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{ws_port}/", lines)
    if process.poll() is None:
        process.kill()
        process.wait(10)
    raise DevNotReady("promptsvc dev did not become ready:\n" + "".join(seen))
