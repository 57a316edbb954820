"""Probe: does what else the engine runs change a greedy answer? Same question, four conditions.

One question (an agent's first turn: mini-swe-agent's SWE-bench prompts on a shipped task) is asked with
temperature 0 under:

- ``cold``: alone, empty prefix cache (the whole prompt is prefilled in one go);
- ``cold-again``: the same once more (the control: the same schedule twice);
- ``warm``: alone again, its prefix now cached (only the tail is prefilled, attending to cached KV);
- ``batched``: at the same time as ``--others`` other questions of different lengths, empty cache (the
  engine's steps mix its tokens with theirs: other matrix shapes);
- ``batched-warm``: the same, with its prefix cached.

Each answer's token ids and the log-probability of each chosen token are compared with ``cold``: the first
differing token, and the largest log-probability difference while the tokens agree (exactly 0 when the
numerics are bitwise the same). Two servers that schedule differently (``vllm`` and ``continuum``) see
exactly these differences: which requests share a step, and whether a turn's prefix was kept.

    python -m continuum_eval.probes.determinism_probe --base-url http://127.0.0.1:8000 [--others 4] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from continuum.serve.argtypes import positive_int
from continuum.serve.verbs import setup_logging
from continuum_agents import AgentSession
from continuum_eval.live.runs import reset_prefix_cache

__all__ = ["probe", "main"]


def _question(index: int) -> list[dict[str, str]]:
    from continuum_eval.agents_bench.swe import agent_config
    from continuum_workloads.repo_tasks import load_tasks

    tasks = load_tasks()
    task = tasks[index % len(tasks)]
    cfg = agent_config("/testbed")["agent"]
    from jinja2 import Template

    return [{"role": "system", "content": cfg["system_template"]},
            {"role": "user", "content": Template(cfg["instance_template"]).render(task=task["problem_statement"])}]


def _ask(base_url: str, model: str, messages: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
    with AgentSession(base_url, model=model, stream=False) as s:
        r = s.chat(messages, max_tokens=max_tokens, temperature=0.0, logprobs=True, top_logprobs=1)
    choice = r["choices"][0]
    return {"ids": choice.get("token_ids") or [],
            "logprobs": [c["logprob"] for c in (choice.get("logprobs") or {}).get("content") or []]}


def _compare(ref: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    n = next((i for i, (a, b) in enumerate(zip(ref["ids"], other["ids"])) if a != b), None)
    agree = n if n is not None else min(len(ref["ids"]), len(other["ids"]))
    diffs = [abs(a - b) for a, b in zip(ref["logprobs"][:agree], other["logprobs"][:agree])]
    return {"identical": ref["ids"] == other["ids"], "first_diff_token": n, "tokens": len(other["ids"]),
            "max_logprob_diff": max(diffs, default=0.0)}


def probe(base_url: str, others: int = 4, max_tokens: int = 128) -> dict[str, Any]:
    """Ask the question under the four conditions; compare each with ``cold``."""
    base_url = base_url.rstrip("/")
    model = httpx.get(base_url + "/v1/models", timeout=30).json()["data"][0]["id"]
    q = _question(0)
    rest = [_question(i + 1) for i in range(others)]
    answers: dict[str, dict[str, Any]] = {}
    can_reset = reset_prefix_cache(base_url)
    answers["cold"] = _ask(base_url, model, q, max_tokens)
    can_reset = reset_prefix_cache(base_url) and can_reset
    answers["cold-again"] = _ask(base_url, model, q, max_tokens)
    answers["warm"] = _ask(base_url, model, q, max_tokens)
    for name, cold in (("batched", True), ("batched-warm", False)):
        if cold and not reset_prefix_cache(base_url):
            can_reset = False
        with ThreadPoolExecutor(max_workers=others + 1) as pool:
            futures = [pool.submit(_ask, base_url, model, m, max_tokens) for m in [q, *rest]]
            answers[name] = futures[0].result()
            for f in futures[1:]:
                f.result()
    return {"model": model, "others": others, "max_tokens": max_tokens, "prefix_cache_reset": can_reset,
            "conditions": {k: _compare(answers["cold"], v) for k, v in answers.items() if k != "cold"}}


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    ap = argparse.ArgumentParser(prog="python -m continuum_eval.probes.determinism_probe",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--base-url", default="http://127.0.0.1:8000")
    ap.add_argument("--others", type=positive_int, default=4, help="questions asked alongside (default 4)")
    ap.add_argument("--max-tokens", type=positive_int, default=128)
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    try:
        out = probe(args.base_url, args.others, args.max_tokens)
    except httpx.HTTPError as exc:
        print(f"determinism_probe: --base-url: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{out['model']}, {out['max_tokens']} greedy tokens, {out['others']} other questions when batched")
    print("| condition vs cold | identical | first differing token | max |logprob diff| while equal |")
    print("|---|---|---|---|")
    for name, c in out["conditions"].items():
        print(f"| {name} | {c['identical']} | {c['first_diff_token']} | {c['max_logprob_diff']:.2e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
