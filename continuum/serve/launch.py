"""Run `continuum serve` as a child process: used by the demo, the live benchmark, `continuum cluster` and the tests.

Every child gets a tether (`continuum.serve.tether`): if this process dies without stopping it, the child's whole
process group (vLLM's engine core included) goes too, so no server is left serving for nobody."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from continuum.serve import tether


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
        self.tether: subprocess.Popen | None = None
        self.orphan_grace_s = tether.DEFAULT_GRACE_S
        self.started_s = 0.0
        self.env: dict[str, str] | None = None  # the child's environment (None: this process's)

    def spawn(self) -> subprocess.Popen:
        """Start the child and its tether; no waiting (`start` waits for /health)."""
        out = open(self.log_path, "w") if self.log_path else subprocess.DEVNULL
        # A new process group, so stopping it also stops vLLM's engine-core child.
        self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                     env=self.env)
        self.tether = subprocess.Popen([sys.executable, "-m", "continuum.serve.tether", str(os.getpid()),
                                        str(self.proc.pid), str(self.orphan_grace_s)],
                                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, start_new_session=True)  # holds no pipe open
        return self.proc

    def start(self) -> "ServerProcess":
        t0 = time.monotonic()
        self.spawn()
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
        try:
            if self.proc is None or self.proc.poll() is not None:
                return self.proc.returncode if self.proc else None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            return self.proc.returncode
        finally:
            self._end_stragglers()
            self._untether()

    def _end_stragglers(self) -> None:
        """What is left of the child's group once it exited (an engine core whose server was killed)."""
        if self.proc is not None and self.proc.poll() is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def _untether(self) -> None:
        """The tether exits once the group is gone; reap it (or end it, if the group lingers)."""
        if self.tether is None:
            return
        try:
            self.tether.wait(2.0)
        except subprocess.TimeoutExpired:
            self.tether.kill()
            self.tether.wait()

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
