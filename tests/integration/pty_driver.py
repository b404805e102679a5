"""Drive an interactive `shopedge` command through a pseudo-terminal, like a technician."""

from __future__ import annotations

import os
import pty
import select
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class Terminal:
    """The provision command on a pseudo-terminal, answered like a technician would."""

    def __init__(self, *args: str) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # child: becomes the command, with the pty as its controlling tty
            os.chdir(ROOT)
            os.execv(sys.executable, [sys.executable, "-m", "agent", *args])
        self.output = ""

    def expect(self, text: str, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while text not in self.output:
            left = deadline - time.monotonic()
            assert left > 0, f"never saw {text!r}; got:\n{self.output}"
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    chunk = b""
                assert chunk, f"program ended before {text!r}; got:\n{self.output}"
                self.output += chunk.decode("utf-8", "replace")
        self.output = self.output[self.output.index(text) + len(text) :]

    def answer(self, prompt: str, value: str) -> None:
        self.expect(prompt)
        os.write(self.fd, value.encode() + b"\r")

    def finish(self, within: float = 30.0) -> tuple[int, str]:
        tail = ""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                tail += chunk.decode("utf-8", "replace")
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status), self.output + tail

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
