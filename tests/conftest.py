"""Shared fixtures: the embedded tiny model, and one `continuum serve tiny` shared by the live modules.

Starting a vLLM engine costs far more than anything a live test does with it, so the modules whose tests can
use one configuration share a single server for the whole run (``tiny_server``): the Continuum policy, blocks
of 32 tokens, an 8192-token context, cached-token counts in the usage, eager mode (no compiling at start-up)
and vLLM's development endpoints (``/reset_prefix_cache``). Tests on it use session ids of their own and read
differences of counters, never a fresh server's absolute values. A module that needs other flags (a small KV
pool, API keys, data parallelism, another model) starts its own server.

Order of a run: the tests that need no engine first, then the live ones (marked ``engine``; every test that
uses a server fixture of this file is marked), module by module. When the run has tests on the shared
server, it starts in the background as soon as collection ends, while the tests without an engine run. A
test that ends the shared server asks for ``tiny_server_to_stop``: it runs after every other test, and if
anything still asks for the server later, a new one is started.
"""

from __future__ import annotations

import tempfile
import threading
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
STOPPER = "tiny_server_to_stop"


class SharedServer:
    """The run's `continuum serve tiny --policy continuum TINY_FLAGS`, started once, and again if a test ended it.
    A start that failed is not tried again: every test that needs the server reports that failure."""

    flags = TINY_FLAGS

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.proc: ServerProcess | None = None
        self.starts = 0
        self.error: BaseException | None = None
        self._early: threading.Thread | None = None

    def start_early(self) -> None:
        """Start the server in a thread; :meth:`get` waits for it."""

        def run() -> None:
            try:
                self._start()
            except BaseException:  # noqa: BLE001 - kept in self.error, reported by get()
                pass

        self._early = threading.Thread(target=run, name="shared-tiny-server", daemon=True)
        self._early.start()

    def get(self) -> ServerProcess:
        if self._early is not None:
            self._early.join()
            self._early = None
        if self.error is not None:
            raise RuntimeError(f"the shared tiny server did not start: {self.error!r}") from self.error
        if self.proc is None or self.proc.proc is None or self.proc.proc.poll() is not None:
            self._start()
        return self.proc

    def _start(self) -> None:
        self.stop()
        self.starts += 1
        self.proc = self.launch("continuum", self.log_dir / f"serve-{self.starts}.log", start=False)
        try:
            self.proc.start()
        except BaseException as exc:
            self.error = exc
            raise

    def launch(self, policy: str, log_path: Path, start: bool = True) -> ServerProcess:
        """A server like the shared one under another ``--policy`` (the caller stops it)."""
        proc = ServerProcess("tiny", ["--policy", policy, *self.flags], log_path=log_path)
        proc.cmd = ["env", f"{DEV_MODE_ENV}=1", *proc.cmd]  # development endpoints for this server only
        return proc.start() if start else proc

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def close(self) -> None:
        self.stop()  # a start still under way fails at once
        if self._early is not None:
            self._early.join(timeout=70)
            self.stop()


SHARED = pytest.StashKey[SharedServer]()


def uses(item: pytest.Item, names: tuple[str, ...]) -> bool:
    return any(name in getattr(item, "fixturenames", ()) for name in names)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Runs before `-m` deselects: a test that uses a server fixture is an engine test wherever it is.
    for item in items:
        if uses(item, SERVER_FIXTURES):
            item.add_marker(pytest.mark.engine)
    items.sort(key=lambda item: 2 if uses(item, (STOPPER,)) else 1 if item.get_closest_marker("engine") else 0)


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly or not any(uses(item, SERVER_FIXTURES) for item in session.items):
        return
    models.build("tiny")  # here, not in the thread: tests that run meanwhile may build it too
    shared = SharedServer(Path(tempfile.mkdtemp(prefix="continuum-shared-tiny-")))
    session.config.stash[SHARED] = shared
    shared.start_early()


def pytest_sessionfinish(session: pytest.Session) -> None:
    shared = session.config.stash.get(SHARED, None)
    if shared is not None:
        shared.close()


@pytest.fixture(scope="session")
def tiny_model() -> str:
    return str(models.build("tiny"))


@pytest.fixture(scope="session")
def shared_tiny(request, tiny_model, tmp_path_factory) -> Iterator[SharedServer]:
    shared = request.config.stash.get(SHARED, None)
    if shared is None:
        shared = request.config.stash[SHARED] = SharedServer(tmp_path_factory.mktemp("shared-tiny"))
    try:
        yield shared
    finally:
        shared.close()


@pytest.fixture
def tiny_server(shared_tiny) -> ServerProcess:
    """The shared `continuum serve tiny` (up and healthy)."""
    return shared_tiny.get()


@pytest.fixture
def tiny_server_to_stop(shared_tiny) -> ServerProcess:
    """The shared server, for a test that kills or stops it (such a test runs last)."""
    return shared_tiny.get()
