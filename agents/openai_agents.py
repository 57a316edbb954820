"""The OpenAI Agents SDK (``openai-agents``, import name ``agents``) on a Continuum server: one run, one program.

Only the SDK's supported extension points are used, nothing is patched:

- a **model provider** (``RunConfig.model_provider``) whose models are the SDK's own chat-completions model on an
  ``AsyncOpenAI`` client pointed at the server. Each model call adds, through ``ModelSettings.extra_body`` /
  ``extra_headers``, the run's program id (``session_id`` body field and ``X-Session-ID`` header) and the hints:
  ``tool`` when the request already decides the tool (``tool_choice`` names it, or is ``"required"`` with one
  tool), ``is_last_step`` when the turn cannot lead to another one (no tools or handoffs offered,
  ``tool_choice="none"``, or the run's last allowed turn) and the run ends the program. When the model picks the
  tool itself, the server reads its name from the answer's ``tool_calls``.
- **run hooks** (``on_tool_start`` / ``on_tool_end``) time each local tool call (``session.tool_calls``).
- The program ends on the server (``POST /v1/sessions/{id}/end``) when the ``async with`` block is left.

One :class:`ContinuumRun` is one program: a fresh id unless ``session_id`` is given. To continue a program in a
later ``Runner.run`` (a follow-up question), give both runs the same ``session_id`` and ``end=False`` to all but
the last. ::

    agent = Agent(name="helper", instructions="...", tools=[list_files])
    async with ContinuumRun("http://127.0.0.1:8000", model="smollm2-135m") as run:
        result = await Runner.run(agent, "Which file would you read first?", **run.runner_kwargs())
    print(run.session.session_id, run.session.turns, run.session.tool_calls)
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from agents import (
    AgentOutputSchemaBase,
    Handoff,
    ModelProvider,
    ModelResponse,
    ModelSettings,
    ModelTracing,
    OpenAIChatCompletionsModel,
    RunConfig,
    RunContextWrapper,
    RunHooks,
    Tool,
    TResponseInputItem,
)
from openai import AsyncOpenAI

from continuum_agents.protocol import TurnStats, prompt_digest
from continuum_agents.session import AsyncAgentSession, new_session_id

__all__ = ["ContinuumRun", "ContinuumProvider", "ContinuumChatModel", "ContinuumHooks"]

_CHOICE_WORDS = ("auto", "required", "none")


class ContinuumRun:
    """One program on the server for one agent run: the provider and hooks to hand to ``Runner.run``.

    ``model``: the served model every agent of the run uses (default: the server's first model; agents written
    for OpenAI's model names keep working). ``max_turns``: the run's turn limit (passed to the runner too), so
    its last allowed turn is marked. ``end``: end the program when the block is left (and mark its last turn).
    """

    def __init__(self, base_url: str, model: str | None = None, session_id: str | None = None, *,
                 api_key: str | None = None, max_turns: int | None = None, end: bool = True,
                 send_hints: bool = True, timeout_s: float = 600.0, client: httpx.AsyncClient | None = None) -> None:
        self.session = AsyncAgentSession(base_url, model, session_id or new_session_id("oai-agents"),
                                         api_key=api_key, send_hints=send_hints, timeout_s=timeout_s, client=client)
        # The session's connection pool: its short keep-alive avoids turns sent on a connection the server closes.
        self.client = AsyncOpenAI(base_url=self.session.base_url + "/v1", api_key=api_key or "none",
                                  http_client=self.session.client)
        self.max_turns = max_turns
        self.end_program = end
        self.provider = ContinuumProvider(self)
        self.hooks = ContinuumHooks(self.session)

    async def __aenter__(self) -> ContinuumRun:
        if self.session.model is None:
            r = await self.session.client.get(self.session.base_url + "/v1/models", headers=self.session.headers)
            r.raise_for_status()
            self.session.model = r.json()["data"][0]["id"]
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self.end_program:
                await self.session.end()
        finally:
            await self.session.aclose()

    def run_config(self, **fields: Any) -> RunConfig:
        """A ``RunConfig`` on this program; ``fields`` are other ``RunConfig`` fields (or overrides)."""
        # Tracing off by default: the SDK's exporter ships each run to OpenAI's platform, which needs an OpenAI
        # key and is not where a self-hosted server's runs belong. ``tracing_disabled=False`` turns it back on.
        defaults: dict[str, Any] = {"model_provider": self.provider, "model": self.session.model,
                                    "tracing_disabled": True}
        return RunConfig(**{**defaults, **fields})

    def runner_kwargs(self, **run_config_fields: Any) -> dict[str, Any]:
        """Keyword arguments for ``Runner.run`` / ``run_streamed``: ``run_config``, ``hooks``, ``max_turns``."""
        kwargs: dict[str, Any] = {"run_config": self.run_config(**run_config_fields), "hooks": self.hooks}
        if self.max_turns is not None:
            kwargs["max_turns"] = self.max_turns
        return kwargs

    # -- what each model call carries ---------------------------------------------------------------------------
    def settings_for(self, settings: ModelSettings, tools: list[Tool], handoffs: list[Handoff]) -> ModelSettings:
        """``settings`` plus the program id and this turn's hints (merged into the caller's own extras)."""
        extra = self.session.openai_kwargs(tool=known_tool(settings, tools, handoffs),
                                           is_last_step=self.is_last_step(settings, tools, handoffs))
        body = extra["extra_body"]
        own = settings.extra_body if isinstance(settings.extra_body, dict) else {}
        if isinstance(own.get("vllm_xargs"), dict) and "vllm_xargs" in body:
            body["vllm_xargs"] = {**own["vllm_xargs"], **body["vllm_xargs"]}
        return settings.resolve(ModelSettings(
            extra_body={**own, **body}, extra_headers={**(settings.extra_headers or {}), **extra["extra_headers"]},
            # Streamed turns report their tokens only when asked (the SDK asks OpenAI's own API alone).
            include_usage=True if settings.include_usage is None else None))

    def is_last_step(self, settings: ModelSettings, tools: list[Tool], handoffs: list[Handoff]) -> bool:
        if not self.end_program:
            return False  # the program goes on in a later run: its context is worth keeping
        # A turn offered no tool answers with the final output: the run ends after it.
        no_tool = settings.tool_choice == "none" or not (tools or handoffs)
        at_limit = self.max_turns is not None and self.session.turns + 1 >= self.max_turns
        return no_tool or at_limit


def known_tool(settings: ModelSettings, tools: list[Tool], handoffs: list[Handoff]) -> str | None:
    """The tool the turn's answer will call, when the request decides it rather than the model."""
    choice = settings.tool_choice
    if isinstance(choice, str) and choice not in _CHOICE_WORDS:
        return choice
    if choice == "required" and len(tools) == 1 and not handoffs:
        return getattr(tools[0], "name", None)
    return None


class ContinuumProvider(ModelProvider):
    """Resolves model names to chat-completions models on the run's server and program."""

    def __init__(self, run: ContinuumRun) -> None:
        self.run = run
        self._models: dict[str, ContinuumChatModel] = {}

    def get_model(self, model_name: str | None) -> ContinuumChatModel:
        name = model_name or self.run.session.model
        if name is None:
            raise ValueError("no model name: give ContinuumRun a model, or enter it with `async with`")
        if name not in self._models:
            self._models[name] = ContinuumChatModel(name, self.run)
        return self._models[name]


class ContinuumChatModel(OpenAIChatCompletionsModel):
    """The SDK's chat-completions model; each call carries the run's program id and hints and is recorded as a
    turn of ``run.session`` (tokens, cached tokens, time to first token when streamed)."""

    def __init__(self, model: str, run: ContinuumRun) -> None:
        super().__init__(model=model, openai_client=run.client)
        self.run = run

    async def get_response(self, system_instructions: str | None, input: str | list[TResponseInputItem],
                           model_settings: ModelSettings, tools: list[Tool],
                           output_schema: AgentOutputSchemaBase | None, handoffs: list[Handoff],
                           tracing: ModelTracing, previous_response_id: str | None = None,
                           conversation_id: str | None = None, prompt: Any = None) -> ModelResponse:
        settings = self.run.settings_for(model_settings, tools, handoffs)
        stats = TurnStats(index=self.run.session.turns, sent_s=time.monotonic(), prompt_digest=prompt_digest(input))
        response = await super().get_response(system_instructions, input, settings, tools, output_schema, handoffs,
                                              tracing, previous_response_id, conversation_id, prompt)
        self._record(stats, response.usage, response.output)
        return response

    async def stream_response(self, system_instructions: str | None, input: str | list[TResponseInputItem],
                              model_settings: ModelSettings, tools: list[Tool],
                              output_schema: AgentOutputSchemaBase | None, handoffs: list[Handoff],
                              tracing: ModelTracing, previous_response_id: str | None = None,
                              conversation_id: str | None = None, prompt: Any = None) -> AsyncIterator[Any]:
        settings = self.run.settings_for(model_settings, tools, handoffs)
        stats = TurnStats(index=self.run.session.turns, sent_s=time.monotonic(), prompt_digest=prompt_digest(input))
        async for event in super().stream_response(system_instructions, input, settings, tools, output_schema,
                                                   handoffs, tracing, previous_response_id, conversation_id, prompt):
            if stats.first_token_s is None and event.type.endswith(".delta"):
                stats.first_token_s = time.monotonic()
            if event.type == "response.completed":
                self._record(stats, event.response.usage, event.response.output)
            yield event

    def _record(self, stats: TurnStats, usage: Any, output: list[Any]) -> None:
        stats.done_s = time.monotonic()
        stats.first_token_s = stats.first_token_s or stats.done_s
        stats.prompt_tokens = int(getattr(usage, "input_tokens", 0) or 0)
        stats.output_tokens = int(getattr(usage, "output_tokens", 0) or 0)
        details = getattr(usage, "input_tokens_details", None)
        cached = getattr(details, "cached_tokens", None)
        stats.cached_tokens = int(cached) if cached is not None else None
        stats.output_text = "".join(getattr(part, "text", "") for item in output if item.type == "message"
                                    for part in item.content if part.type == "output_text")
        self.run.session.record_turn(stats)


class ContinuumHooks(RunHooks):
    """Times each local tool call of the run as a tool call of ``session``. To add hooks of your own, subclass
    it and call ``super()`` in ``on_tool_start`` / ``on_tool_end``."""

    def __init__(self, session: AsyncAgentSession) -> None:
        self.session = session
        self._started: dict[str, float] = {}

    @staticmethod
    def _key(context: RunContextWrapper[Any], tool: Tool) -> str:
        # Parallel tool calls run at once: a function tool's context names its call; other tools share a name.
        return getattr(context, "tool_call_id", None) or f"{tool.name}@{id(context)}"

    async def on_tool_start(self, context: RunContextWrapper[Any], agent: Any, tool: Tool) -> None:
        self._started[self._key(context, tool)] = time.monotonic()

    async def on_tool_end(self, context: RunContextWrapper[Any], agent: Any, tool: Tool, result: object) -> None:
        t0 = self._started.pop(self._key(context, tool), None)
        if t0 is not None:
            self.session.record_tool(tool.name, time.monotonic() - t0)
