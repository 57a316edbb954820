"""Beam search patience on vLLM's own frontend beam search loop.

The engine here is scripted (named so): it answers every beam with the same logprobs, among them the
end-of-sequence token, so how many hypotheses finish at each step is known exactly. The search loop is vLLM's.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from vllm import CompletionOutput, RequestOutput
from vllm.entrypoints.generate.beam_search.online import BeamSearchOnlineMixin
from vllm.logprobs import Logprob
from vllm.sampling_params import BeamSearchParams

from continuum.http import beam_patience

EOS = 2


class ScriptedEngine:
    """Stands in for the engine: each call returns one token with fixed logprobs, EOS among them."""

    def __init__(self) -> None:
        self.calls = 0
        self.input_processor = SimpleNamespace(resolve_watermarking=lambda params: None)

    async def generate(self, prompt, params, request_id, **kw):
        self.calls += 1
        logprobs = {EOS: Logprob(-0.5), 10: Logprob(-1.0), 11: Logprob(-1.1), 12: Logprob(-3.0)}
        yield RequestOutput(request_id=request_id, prompt=None, prompt_token_ids=prompt["prompt_token_ids"],
                            prompt_logprobs=None, finished=True,
                            outputs=[CompletionOutput(index=0, text="", token_ids=[10], cumulative_logprob=-1.0,
                                                      logprobs=[logprobs], finish_reason="length")])


def search(patience: float | None, width: int = 2, max_tokens: int = 20) -> tuple[RequestOutput, int]:
    beam_patience.install()
    tokenizer = SimpleNamespace(eos_token_id=EOS, decode=lambda ids, skip_special_tokens=True: "x" * len(ids))
    serving = SimpleNamespace(renderer=SimpleNamespace(get_tokenizer=lambda: tokenizer), engine_client=ScriptedEngine())
    prompt = {"type": "token", "prompt_token_ids": [5, 6, 7], "prompt": None}
    params = BeamSearchParams(beam_width=width, max_tokens=max_tokens)

    async def run():
        token = beam_patience.PATIENCE.set(patience)
        try:
            return [o async for o in BeamSearchOnlineMixin.beam_search(serving, prompt, "req", params)]
        finally:
            beam_patience.PATIENCE.reset(token)

    (final,) = asyncio.run(run())
    return final, serving.engine_client.calls


def test_without_patience_vllms_search_runs_every_step():
    final, calls = search(None)
    assert calls == 1 + 2 * 19  # one beam, then two for nineteen steps: vLLM has no stop-on-count rule
    assert len(final.outputs) == 2


def test_patience_stops_once_enough_hypotheses_finished():
    # Every beam finds EOS among its candidates each step: step 1 runs the prompt's one beam (1 finished), later
    # steps run `width` beams (up to 3 live candidates: 10, 11, 12), each finishing one hypothesis.
    final, calls = search(1.0)  # ceil(1 * 2) = 2: 1 + 2 finished after step 2, so step 3 never runs
    assert calls == 1 + 2
    assert {o.finish_reason for o in final.outputs} <= {"stop", "length"}
    assert any(o.finish_reason == "stop" for o in final.outputs)
    _, calls = search(3.0)  # ceil(3 * 2) = 6: 1, 3, 5, 7 finished after steps 1-4
    assert calls == 1 + 2 + 2 + 2
    _, calls = search(0.5, width=4)  # ceil(0.5 * 4) = 2: 1, then 1 + 3 after step 2
    assert calls == 1 + 3
