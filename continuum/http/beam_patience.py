"""Beam search with patience (Kasai et al., 2022) for vLLM's frontend beam search.

vLLM 0.32 runs beam search in the API process (`BeamSearchOnlineMixin.beam_search`): each step sends every live
beam to the engine for one token with ``2 * width`` logprobs, keeps each candidate that is the end-of-sequence
token as a finished hypothesis, and goes on for ``max_tokens`` steps whatever it has found. Patience adds the
stopping rule: stop once ``ceil(patience * width)`` hypotheses have finished (patience 1 is the classic rule;
smaller stops sooner, larger searches longer).

We do not rewrite the search. A request that sets ``vllm_xargs.patience`` runs vLLM's own loop through a thin
view of the serving object whose engine client counts finished hypotheses as the outputs stream by, by the same
rule the loop uses (an EOS token among a beam's candidates, unless ``ignore_eos``). Once enough have finished,
the next step's calls are answered at once with vLLM's "abort" finish, which makes the loop stop and return its
best beams; the beams still alive then report ``length`` (stopped by a limit), not ``abort``. Without the hint
vLLM's function runs untouched. The hint travels from the HTTP layer in a context variable.
"""

from __future__ import annotations

import math
from contextvars import ContextVar
from typing import Any, AsyncIterator

from vllm import CompletionOutput, RequestOutput

PATIENCE: ContextVar[float | None] = ContextVar("continuum_beam_patience", default=None)
_original = None


def patience_of(body: Any) -> float | None:
    """The patience a (validated) completion request asks for: only with ``use_beam_search``."""
    if not isinstance(body, dict) or not body.get("use_beam_search"):
        return None
    xargs = body.get("vllm_xargs")
    value = xargs.get("patience") if isinstance(xargs, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class _CountingEngine:
    """The engine client, as one beam search sees it: counts finished hypotheses, stops the search when told."""

    def __init__(self, engine: Any, eos: int | None, ignore_eos: bool, enough: int) -> None:
        self._engine, self._eos, self._ignore_eos, self.enough = engine, eos, ignore_eos, enough
        self.finished = 0  # hypotheses finished so far
        self._step, self._before_step = None, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def _stop(self, request_id: str) -> bool:
        # The loop sends one step's beams together ("<batch>-beam-<i>") and waits for all of them, so the count
        # taken when a step's first call arrives is final for the steps before it: all of a step stops, or none.
        step = request_id.rsplit("-beam-", 1)[0]
        if step != self._step:
            self._step, self._before_step = step, self.finished
        return self._before_step >= self.enough

    async def generate(self, prompt: Any, params: Any, request_id: str, **kw: Any) -> AsyncIterator[RequestOutput]:
        if self._stop(request_id):
            yield RequestOutput(request_id=request_id, prompt=None, prompt_token_ids=None, prompt_logprobs=None,
                                outputs=[CompletionOutput(index=0, text="", token_ids=[], cumulative_logprob=None,
                                                          logprobs=None, finish_reason="abort")], finished=True)
            return
        async for out in self._engine.generate(prompt, params, request_id, **kw):
            if out.finished and out.outputs and out.outputs[0].logprobs and not self._ignore_eos:
                self.finished += int(self._eos in out.outputs[0].logprobs[0])
            yield out


class _View:
    """The serving object with its engine client swapped, for one call (the real one is shared by requests)."""

    def __init__(self, serving: Any, engine: _CountingEngine) -> None:
        self._serving, self.engine_client = serving, engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self._serving, name)


async def beam_search(self: Any, prompt: Any, request_id: str, params: Any, *args: Any,
                      **kwargs: Any) -> AsyncIterator[RequestOutput]:
    patience = PATIENCE.get()
    if patience is None:
        async for out in _original(self, prompt, request_id, params, *args, **kwargs):
            yield out
        return
    eos = self.renderer.get_tokenizer().eos_token_id
    engine = _CountingEngine(self.engine_client, eos, params.ignore_eos, math.ceil(patience * params.beam_width))
    async for out in _original(_View(self, engine), prompt, request_id, params, *args, **kwargs):
        for completion in out.outputs:
            if completion.finish_reason == "abort" and engine.finished >= engine.enough:
                completion.finish_reason = "length"
        yield out


def install() -> None:
    """Put the patience rule in front of vLLM's frontend beam search (idempotent; in the API server process)."""
    global _original
    from vllm.entrypoints.generate.beam_search.online import BeamSearchOnlineMixin

    if _original is None:
        _original = BeamSearchOnlineMixin.beam_search
        BeamSearchOnlineMixin.beam_search = beam_search
