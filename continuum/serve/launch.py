"""Run `continuum serve` as a child process: used by the demo, the live benchmark and the tests."""

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
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`continuum serve [MODEL] ...` in a child process; a context manager that waits for /health."""

    def __init__(self, model: str | None, args: list[str] = (), port: int | None = None,
                 log_path: str | Path | None = None, startup_timeout_s: float = 600.0) -> None:
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        # model None: ``args`` name it (or leave the default), wherever among vLLM's flags.
        self.cmd = [sys.executable, "-m", "continuum.serve.cli", "serve", *([model] if model else []), "--port",
                    str(self.port), *args]
        self.log_path = Path(log_path) if log_path else None
        self.startup_timeout_s = startup_timeout_s
        self.proc: subprocess.Popen | None = None
        self.started_s = 0.0

    def start(self) -> "ServerProcess":
        out = open(self.log_path, "w") if self.log_path else subprocess.DEVNULL
        t0 = time.monotonic()
        # A new process group, so stopping it also stops vLLM's engine-core child.
        self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = t0 + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode} during start-up ({self.log_hint()})")
            try:
                if httpx.get(self.base_url + "/health", timeout=2).status_code == 200:
                    self.started_s = time.monotonic() - t0
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(1.0)
        self.stop()
        raise TimeoutError(f"server not healthy after {self.startup_timeout_s:.0f}s ({self.log_hint()})")

    def log_hint(self) -> str:
        return f"log: {self.log_path}" if self.log_path else "no log kept"

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit in time; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
