"""A command run in a pseudo-terminal (stdlib `pty`): what a person at a terminal sees, and Ctrl-C
as the terminal sends it (the line discipline turns ^C into SIGINT for the foreground process)."""

import os
import pty
import select
import time
from collections.abc import Callable


class Terminal:
    def __init__(self, argv: list[str], env: dict[str, str], cwd: str) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: the pty is its controlling terminal and stdin/stdout/stderr
            os.chdir(cwd)
            os.execve(argv[0], argv, env)
        self.pid, self.fd = pid, fd
        self.output = b""

    def read_until(self, done: Callable[[bytes], bool], timeout: float) -> bytes:
        """Read until `done(output so far)` or the end; AssertionError past `timeout` (a bound only)."""
        deadline = time.monotonic() + timeout
        while not done(self.output):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"not seen within {timeout} s: {self.output[-500:]!r}")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready and not self._read():
                break
        return self.output

    def _read(self) -> bool:
        try:
            chunk = os.read(self.fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            chunk = b""
        self.output += chunk
        return bool(chunk)

    def press_ctrl_c(self) -> None:
        os.write(self.fd, b"\x03")

    def wait(self, timeout: float) -> int:
        """Read to the end, then the exit code."""
        self._drain(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.05)
        os.kill(self.pid, 9)
        raise AssertionError(f"still running after {timeout} s: {self.output[-500:]!r}")

    def _drain(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.fd], [], [], deadline - time.monotonic())
            if ready and not self._read():
                return
