"""The API server process: Continuum's HTTP extension of vLLM's OpenAI server.

`middleware` (the ASGI middleware vLLM loads with ``--middleware``: program ids, hints, tenancy, turn reports),
`routes` (session and stats endpoints on vLLM's FastAPI app), `validation` (request fields, pydantic), `dialects`
(other stacks' hints mapped onto the program model), `keys` and `tenancy` (API keys to tenants), `tool_names` (the
tool read from an answer), `turn_watch` (tool, delivery and disconnect reports to the engine), `metrics` (a
Prometheus collector), `beam_patience` (early stopping of beam search), `dp_affinity` (a program kept on one
data-parallel rank).
"""
