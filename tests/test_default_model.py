"""The embedded default model, served by `continuum serve`, answers a question with a sentence; the server shuts
down cleanly on SIGTERM (the module's last test stops it)."""

from __future__ import annotations

import signal
import time

import httpx
import pytest

from continuum.serve import models
from continuum.serve.launch import ServerProcess

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    models.build(models.DEFAULT_MODEL)
    log = tmp_path_factory.mktemp("default-model") / "serve.log"
    with ServerProcess(models.DEFAULT_MODEL, ["--max-model-len", "2048", "--enforce-eager"], log_path=log) as proc:
        yield proc


def test_smollm2_knows_the_capital_of_france(server):
    r = httpx.post(server.base_url + "/v1/chat/completions", timeout=120, json={
        "model": models.DEFAULT_MODEL, "temperature": 0.0, "max_tokens": 30, "session_id": "capital",
        "messages": [{"role": "user", "content": "What is the capital of France?"}]})
    assert r.status_code == 200, r.text
    answer = r.json()["choices"][0]["message"]["content"]
    assert "Paris" in answer and answer.rstrip().endswith("."), answer


def test_sigterm_shuts_down_cleanly(server):
    """Runs last in this module: stops the module's server."""
    t0 = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    code = server.proc.wait(60)
    assert code in (0, -signal.SIGTERM), code
    assert time.monotonic() - t0 < 60
    with pytest.raises(httpx.HTTPError):
        httpx.get(server.base_url + "/health", timeout=2)
