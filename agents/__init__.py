"""Agent-side client SDK for Continuum (HTTP only: httpx, or the ``openai`` client).

:class:`AgentSession` / :class:`AsyncAgentSession` carry the program id on every request, send the
``tool`` / ``is_last_step`` hints, stream each turn (time to first token, cached tokens, output ids in
``turn_stats``), retry a turn once on a dropped connection, time tool calls and end the program on the server.
See agents/README.md.
"""

from continuum_agents.session import AgentSession, AsyncAgentSession, SessionError, ToolCall, TurnStats, new_session_id

__all__ = ["AgentSession", "AsyncAgentSession", "SessionError", "ToolCall", "TurnStats", "new_session_id"]

if __name__ == "agents":  # found under the OpenAI Agents SDK's name (the repository root is on sys.path)
    from continuum_agents._shadow import yield_to_sdk

    yield_to_sdk(__file__)
