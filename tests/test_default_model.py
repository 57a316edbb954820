"""The embedded default model, served by `continuum serve`, answers a question with a sentence."""

from __future__ import annotations

import httpx
import pytest

from continuum.serve import models
from continuum.serve.launch import ServerProcess

pytestmark = pytest.mark.engine


def test_smollm2_knows_the_capital_of_france(tmp_path):
    models.build(models.DEFAULT_MODEL)
    with ServerProcess(models.DEFAULT_MODEL, ["--max-model-len", "2048", "--enforce-eager"],
                       log_path=tmp_path / "serve.log") as server:
        r = httpx.post(server.base_url + "/v1/chat/completions", timeout=120, json={
            "model": models.DEFAULT_MODEL, "temperature": 0.0, "max_tokens": 30, "session_id": "capital",
            "messages": [{"role": "user", "content": "What is the capital of France?"}]})
    assert r.status_code == 200, r.text
    answer = r.json()["choices"][0]["message"]["content"]
    assert "Paris" in answer and answer.rstrip().endswith("."), answer
