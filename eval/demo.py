"""The README's main command: serve the embedded default model with Continuum and ask it a question."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import httpx

from continuum import models
from continuum.launch import ServerProcess

QUESTION = "What is the capital of France?"


def ask(base_url: str, model: str, question: str, session_id: str = "demo") -> str:
    r = httpx.post(
        base_url + "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": question}], "max_tokens": 40,
              "temperature": 0.0, "session_id": session_id},
        timeout=120,
    )
    r.raise_for_status()
    return r.json()["choices"][0]["message"]["content"].strip()


def main() -> int:
    model = models.DEFAULT_MODEL
    log = Path(tempfile.gettempdir()) / "continuum-demo-serve.log"
    print(f"Starting `continuum serve {model}` (vLLM + Continuum scheduler); log: {log}", flush=True)
    with ServerProcess(model, ["--max-model-len", "4096"], log_path=log) as server:
        print(f"Server up in {server.started_s:.0f}s at {server.base_url}")
        print(f"Q: {QUESTION}")
        print(f"A: {ask(server.base_url, model, QUESTION)}")
        stats = httpx.get(server.base_url + "/continuum/stats", timeout=30).json()
        print(f"Programs seen by the scheduler: {[p['id'] for p in stats['programs']]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
