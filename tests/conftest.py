"""Shared fixtures: the embedded tiny model, and one `continuum serve tiny` shared by the live modules.

Starting a vLLM engine costs far more than anything a live test does with it, so the modules whose tests can
use one configuration share a single server for the whole run (``tiny_server``): the Continuum policy, blocks
of 32 tokens, an 8192-token context, cached-token counts in the usage, eager mode (no compiling at start-up)
and vLLM's development endpoints (``/reset_prefix_cache``). Tests on it use session ids of their own and read
differences of counters, never a fresh server's absolute values. A module that needs other flags (a small KV
pool, API keys, data parallelism, another model) starts its own server.

A test that ends the shared server asks for ``tiny_server_to_stop``: it runs after every other test, and if
anything still asks for the server later (a reordered run), a new one is started.

Every test that uses a server fixture of this file is marked ``engine`` (``make test-fast`` leaves them out).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from continuum.serve import models
from continuum.serve.launch import ServerProcess

# vLLM's flags of the shared server; a plain-vLLM server compared with it takes the same (see test_agent_bench).
TINY_FLAGS = ["--block-size", "32", "--max-model-len", "8192", "--enable-prefix-caching",
              "--enable-prompt-tokens-details", "--enforce-eager"]
DEV_MODE_ENV = "VLLM_SERVER_DEV_MODE"  # vLLM serves /reset_prefix_cache with it (the determinism probe, benches)
SERVER_FIXTURES = ("tiny_server", "tiny_server_to_stop", "shared_tiny")


@contextlib.contextmanager
def env_set(key: str, value: str) -> Iterator[None]:
    old = os.environ.get(key)
    os.environ[key] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


class SharedServer:
    """The run's `continuum serve tiny --policy continuum TINY_FLAGS`, started on first use and again if it died."""

    flags = TINY_FLAGS

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.proc: ServerProcess | None = None
        self.starts = 0

    def get(self) -> ServerProcess:
        if self.proc is None or self.proc.proc is None or self.proc.proc.poll() is not None:
            self.stop()
            self.starts += 1
            self.proc = self.launch("continuum", self.log_dir / f"serve-{self.starts}.log")
        return self.proc

    def launch(self, policy: str, log_path: Path) -> ServerProcess:
        """A server like the shared one under another ``--policy``, started (the caller stops it)."""
        proc = ServerProcess("tiny", ["--policy", policy, *self.flags], log_path=log_path)
        with env_set(DEV_MODE_ENV, "1"):
            return proc.start()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None


@pytest.fixture(scope="session")
def tiny_model() -> str:
    return str(models.build("tiny"))


@pytest.fixture(scope="session")
def shared_tiny(tiny_model, tmp_path_factory) -> Iterator[SharedServer]:
    shared = SharedServer(tmp_path_factory.mktemp("shared-tiny"))
    try:
        yield shared
    finally:
        shared.stop()


@pytest.fixture
def tiny_server(shared_tiny) -> ServerProcess:
    """The shared `continuum serve tiny` (up and healthy)."""
    return shared_tiny.get()


@pytest.fixture
def tiny_server_to_stop(shared_tiny) -> ServerProcess:
    """The shared server, for a test that kills or stops it (such tests run last)."""
    return shared_tiny.get()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Runs before `-m` deselects: a test that uses a server fixture is an engine test wherever it is.
    for item in items:
        if any(name in getattr(item, "fixturenames", ()) for name in SERVER_FIXTURES):
            item.add_marker(pytest.mark.engine)
    stoppers = [item for item in items if "tiny_server_to_stop" in getattr(item, "fixturenames", ())]
    if stoppers:
        items[:] = [item for item in items if item not in stoppers] + stoppers
