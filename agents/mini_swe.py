"""mini-swe-agent on a Continuum server: its litellm model and local environment, made program-aware.

- :class:`ContinuumModel` is mini-swe-agent's text-based litellm model (actions in fenced
  ``mswea_bash_command`` blocks) whose requests go to the server as a ``hosted_vllm`` provider with the run's
  program id (``session_id`` body field and ``X-Session-ID`` header) and, on the call that reaches the agent's
  step limit, ``is_last_step``. It streams each call (time to first token) and records it in
  ``model.session.turn_stats`` (prompt, cached and output tokens, output ids). A 400 from the server (a prompt
  past the context window) is not retried: it would fail again; another failed call is tried once more
  (``MSWEA_MODEL_RETRY_STOP_AFTER_ATTEMPT``, default 2 here).
- :class:`ContinuumEnvironment` is mini-swe-agent's local environment; it times every command as a tool call
  of the session (``session.tool_calls``).
- :func:`end_run` ends the program on the server after ``agent.run`` (its KV cache is released at once).

The server reads the tool name from the answer (first word of the single fenced block), so no ``tool`` hint is
sent. ::

    model = ContinuumModel(model_name="hosted_vllm/smollm2-135m", base_url="http://127.0.0.1:8000",
                           step_limit=10, model_kwargs={"temperature": 0.0, "max_tokens": 256})
    env = ContinuumEnvironment(session=model.session, cwd="/path/to/repo")
    agent = DefaultAgent(model, env, **agent_config, step_limit=10)
    try:
        agent.run(task="Fix the bug described in ...")
    finally:
        end_run(model)
"""

from __future__ import annotations

import os
import time
from typing import Any

os.environ.setdefault("MSWEA_SILENT_STARTUP", "1")  # no banner on import
os.environ.setdefault("MSWEA_COST_TRACKING", "ignore_errors")  # a local model has no price
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm would fetch its price list on import
# mini-swe-agent retries a failed call up to 10 times with waits of up to a minute; as the SDK does, try once more.
os.environ.setdefault("MSWEA_MODEL_RETRY_STOP_AFTER_ATTEMPT", "2")

import litellm  # noqa: E402
from minisweagent.environments.local import LocalEnvironment  # noqa: E402
from minisweagent.models.litellm_model import LitellmModel  # noqa: E402
from minisweagent.models.litellm_textbased_model import LitellmTextbasedModel, LitellmTextbasedModelConfig  # noqa: E402

from continuum_agents.protocol import SESSION_HEADER, TurnStats, prompt_digest  # noqa: E402
from continuum_agents.session import AgentSession, new_session_id  # noqa: E402

__all__ = ["ContinuumModel", "ContinuumModelConfig", "ContinuumEnvironment", "end_run"]

litellm.suppress_debug_info = True


class ContinuumModelConfig(LitellmTextbasedModelConfig):
    base_url: str = "http://127.0.0.1:8000"
    """The server's root URL (``/v1`` is added)."""
    session_id: str | None = None
    """The program id of this run (default: a fresh one)."""
    step_limit: int = 0
    """The agent's step limit: the call that reaches it carries ``is_last_step`` (0: never)."""
    api_key: str | None = None
    cost_tracking: str = "ignore_errors"


class ContinuumModel(LitellmTextbasedModel):
    abort_exceptions = [*LitellmModel.abort_exceptions, litellm.exceptions.BadRequestError]

    def __init__(self, **kwargs: Any) -> None:
        # LitellmTextbasedModel fixes its config class; ours extends it, so go one level up.
        LitellmModel.__init__(self, config_class=ContinuumModelConfig, **kwargs)
        served = self.config.model_name.split("/", 1)[-1]
        self.session = AgentSession(self.config.base_url, model=served, api_key=self.config.api_key,
                                    session_id=self.config.session_id or new_session_id("mswea"))
        self._last_step = False

    def query(self, messages: list[dict[str, Any]], **kwargs: Any) -> dict:
        limit = self.config.step_limit
        self._last_step = 0 < limit <= self.session.turns + 1
        return super().query(messages, **kwargs)

    def _query(self, messages: list[dict[str, Any]], **kwargs: Any):
        s = self.session
        extra = s.openai_kwargs(is_last_step=self._last_step)
        stats = TurnStats(index=s.turns, sent_s=time.monotonic(), prompt_digest=prompt_digest(messages))
        stream = litellm.completion(
            model=self.config.model_name, messages=messages, api_base=s.base_url + "/v1",
            api_key=s.api_key or "none", stream=True, stream_options={"include_usage": True},
            extra_body={**extra["extra_body"], "return_token_ids": True},
            extra_headers={SESSION_HEADER: s.session_id}, **(self.config.model_kwargs | kwargs))
        chunks, ids = [], []
        for chunk in stream:
            chunks.append(chunk)
            for choice in chunk.choices or []:
                got = getattr(choice, "token_ids", None) or []
                ids.extend(int(i) for i in got)
                if stats.first_token_s is None and (got or getattr(choice.delta, "content", None)):
                    stats.first_token_s = time.monotonic()
        response = litellm.stream_chunk_builder(chunks, messages=messages)
        self._record(stats, response, ids)
        return response

    def _record(self, stats: TurnStats, response: Any, ids: list[int]) -> None:
        stats.done_s = time.monotonic()
        stats.first_token_s = stats.first_token_s or stats.done_s
        usage = getattr(response, "usage", None)
        details = getattr(usage, "prompt_tokens_details", None)
        stats.prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        cached = getattr(details, "cached_tokens", None)
        stats.cached_tokens = int(cached) if cached is not None else None
        stats.output_tokens = int(getattr(usage, "completion_tokens", 0) or len(ids))
        stats.output_ids = ids or None
        choice = response.choices[0]
        stats.output_text = choice.message.content or ""
        stats.finish_reason = choice.finish_reason
        self.session.record_turn(stats)


class ContinuumEnvironment(LocalEnvironment):
    """mini-swe-agent's local environment; each command is timed as a tool call of ``session``."""

    def __init__(self, *, session: AgentSession | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.session = session

    def execute(self, action: dict, cwd: str = "", *, timeout: int | None = None) -> dict[str, Any]:
        if self.session is None:
            return super().execute(action, cwd, timeout=timeout)
        words = (action.get("command") or "").split()
        with self.session.tool(words[0] if words else "bash"):
            return super().execute(action, cwd, timeout=timeout)


def end_run(model: ContinuumModel) -> bool:
    """End the run's program on the server (False on servers without sessions); closes the session."""
    try:
        return model.session.end()
    finally:
        model.session.close()
