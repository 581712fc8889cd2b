"""Starting and stopping local node processes (the demo, `testnet up`, integration tests)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NodeProcess:
    """One `mydata node start HOME` child process, logging to HOME/node.log."""

    def __init__(self, home: Path, api: str) -> None:
        self.home, self.api = home, api
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.api}"

    def start(self, timeout: float = 30.0) -> None:
        log = open(self.home / "node.log", "ab")  # noqa: SIM115 - the child keeps it open
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "cli", "node", "start", str(self.home),
                                      "--api", self.api], stdout=log, stderr=log, env=env,
                                     start_new_session=True)
        log.close()
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"node exited with code {self.proc.returncode}; see {self.home}/node.log:\n"
                                   + self.log_tail())
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"node at {self.url} not healthy after {timeout} s; see {self.home}/node.log")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join((self.home / "node.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it does not stop in time. Only ever our own child, by its pid."""
        p = self.proc
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout)

    def kill9(self) -> None:
        p = self.proc
        if p is not None and p.poll() is None:
            p.kill()
            p.wait(10)
