"""BFCL's OpenAI-compatible model handler, sending its queries through an agent session.

``bfcl-eval``'s ``OpenAICompletionsHandler`` runs BFCL's multi-turn loop itself (``inference``): the entry's
messages with the function documents (in its system prompt for models without tool calling, or as OpenAI
``tools``), the model's calls decoded by BFCL and executed on its backends (file system, messaging, trading,
travel, vehicle, ...), the results fed back, step after step, turn after turn. :class:`ContinuumHandler` changes
only the transport and the tool time:

- each query goes through :class:`agents.AgentSession` (program id, streaming, the retry on a dropped
  connection, per-turn stats), with ``max_tokens`` set (BFCL leaves it to the provider);
- after the backends ran a step's calls, an optional delay drawn from the BFCL trace's per-function duration
  distribution (``continuum_workloads.bfcl.function_duration_params``: BFCL's backends answer in microseconds, real
  services do not) is slept, timed as the session's tool call. ``delay_scale`` 0 turns it off.
"""

from __future__ import annotations

import time
import zlib
from typing import Any, Callable

import numpy as np
from bfcl_eval.model_handler.api_inference.openai_completion import OpenAICompletionsHandler
from openai.types.chat import ChatCompletion

from continuum_agents.session import AgentSession

__all__ = ["ContinuumHandler", "call_names"]


def _plain(message: Any) -> dict[str, Any]:
    """A chat message as JSON (BFCL keeps the openai client's message objects in its history)."""
    if hasattr(message, "model_dump"):
        message = message.model_dump(exclude_none=True)
    return {k: v for k, v in message.items() if v is not None}


def call_names(calls: list[str]) -> list[str]:
    """``["cd(folder='x')", "ls()"]`` -> ``["cd", "ls"]``."""
    return [c.split("(", 1)[0].strip().split(".")[-1] for c in calls if isinstance(c, str)]


class ContinuumHandler(OpenAICompletionsHandler):
    def __init__(self, session: AgentSession, *, run_name: str, fc: bool, max_tokens: int,
                 delay: Callable[[list[str], int], float] | None = None) -> None:
        self.session = session
        # BFCL keys its backend instances by model name and entry id: a distinct run name per run keeps one
        # run's file system or bank account from leaking into the next.
        super().__init__(model_name=run_name, temperature=0.0, registry_name=run_name, is_fc_model=fc)
        self.max_tokens = max_tokens
        self.delay = delay
        self.steps = 0

    def _build_client_kwargs(self) -> dict[str, Any]:
        # The parent builds an openai client from environment variables; queries go through the session, the
        # client only has to exist.
        return {"api_key": self.session.api_key or "none", "base_url": self.session.base_url + "/v1"}

    def generate_with_backoff(self, **kwargs: Any):
        messages = [_plain(m) for m in kwargs.pop("messages")]
        for key in ("model", "store"):
            kwargs.pop(key, None)
        start = time.time()
        answer = self.session.chat(messages, max_tokens=self.max_tokens, **kwargs)
        answer.setdefault("created", int(start))
        answer.setdefault("model", self.session.model or "")
        answer.setdefault("id", f"{self.session.session_id}-{self.session.turns}")
        for choice in answer.get("choices", []):
            choice["finish_reason"] = choice.get("finish_reason") or "stop"
        return ChatCompletion.model_validate(answer), time.time() - start

    def _tool_pause(self, names: list[str]) -> None:
        self.steps += 1
        seconds = self.delay(names, self.steps) if self.delay else 0.0
        with self.session.tool(names[0] if names else "unknown"):
            if seconds > 0:
                time.sleep(seconds)

    def _add_execution_results_prompting(self, inference_data: dict, execution_results: list[str],
                                         model_response_data: dict) -> dict:
        self._tool_pause(call_names(model_response_data.get("model_responses_decoded") or []))
        return super()._add_execution_results_prompting(inference_data, execution_results, model_response_data)

    def _add_execution_results_FC(self, inference_data: dict, execution_results: list[str],
                                  model_response_data: dict) -> dict:
        responses = model_response_data.get("model_responses")
        names = [next(iter(r)) for r in responses if isinstance(r, dict)] if isinstance(responses, list) else []
        self._tool_pause(names)
        return super()._add_execution_results_FC(inference_data, execution_results, model_response_data)


def trace_delay(doc_class: dict[str, str], entry_id: str, seed: int, scale: float) -> Callable[[list[str], int], float]:
    """Seconds for one step's calls: the sum of per-call log-normal draws of the BFCL trace distribution."""
    from continuum_workloads.bfcl import function_duration_params

    def delay(names: list[str], step: int) -> float:
        rng = np.random.default_rng([seed & 0xFFFFFFFF, zlib.crc32(entry_id.encode()), step])
        total = 0.0
        for name in names or ["unknown"]:
            median, sigma = function_duration_params(name, doc_class.get(name))
            total += median * float(np.exp(sigma * rng.standard_normal()))
        return scale * total

    return delay
