"""litellm on a Continuum session: the server as a ``hosted_vllm`` provider, with the program id and hints.

``session.litellm_kwargs(...)`` gives ``model="hosted_vllm/<model>"``, ``api_base``, and the same
``extra_body`` / ``extra_headers`` as for the openai client. Two turns, the second marked as the last step.

    python -m continuum_agents.examples.litellm_client --base-url http://127.0.0.1:8000 --model smollm2-135m
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price-list download on import

import httpx  # noqa: E402
import litellm  # noqa: E402

from continuum_agents import AgentSession  # noqa: E402


def run(base_url: str, model: str | None = None, max_tokens: int = 48) -> dict[str, Any]:
    if model is None:
        model = httpx.get(base_url.rstrip("/") + "/v1/models", timeout=30).json()["data"][0]["id"]
    with AgentSession(base_url, model=model) as s:
        messages = [{"role": "user", "content": "Name a command that counts lines in a file."}]
        r1 = litellm.completion(messages=messages, max_tokens=max_tokens, temperature=0,
                                **s.litellm_kwargs(tool="wc"))
        with s.tool("wc"):
            result = "42 notes.txt"
        messages += [{"role": "assistant", "content": r1.choices[0].message.content},
                     {"role": "user", "content": f"It printed: {result}. What does that mean?"}]
        r2 = litellm.completion(messages=messages, max_tokens=max_tokens, temperature=0,
                                **s.litellm_kwargs(is_last_step=True))
    usage = r2.usage
    return {"session_id": s.session_id, "answers": [r1.choices[0].message.content, r2.choices[0].message.content],
            "cached_tokens_turn2": getattr(usage.prompt_tokens_details, "cached_tokens", None),
            "tool_time_s": s.tool_time_s, "ended_on_server": s.end_status == 200}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m continuum_agents.examples.litellm_client",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--base-url", default="http://127.0.0.1:8000")
    ap.add_argument("--model", help="default: the server's first model")
    args = ap.parse_args(argv)
    for k, v in run(args.base_url, args.model).items():
        print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
