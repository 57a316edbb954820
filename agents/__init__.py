"""Agent-side client SDK for Continuum (HTTP only: httpx, or the ``openai`` client).

:class:`AgentSession` / :class:`AsyncAgentSession` carry the program id on every request, send the
``tool`` / ``is_last_step`` hints, time tool calls and end the program on the server. See agents/README.md.
"""

from agents.session import AgentSession, AsyncAgentSession, SessionError, ToolCall, new_session_id

__all__ = ["AgentSession", "AsyncAgentSession", "SessionError", "ToolCall", "new_session_id"]
