"""What differs between the vLLM releases Continuum runs on (0.32, 0.33, 0.34), in one place.

Continuum subclasses vLLM's v1 scheduler and reads a few of its internals, so a vLLM release can move the ground
under it. Each difference that reaches Continuum's scheduler, its components, the offload policy or the
simulator's offline scheduler is listed here with the release that brought it, read from the released wheels.
Where code must differ, it asks a helper below, which tests for the feature rather than the version number (a
patched or nightly vLLM then takes the right branch too); the rest needs no code and says why.

0.33
  - ``SchedulerInterface.has_request()`` became abstract. vLLM's ``Scheduler`` implements it and both Continuum
    schedulers inherit it: nothing to do.
  - ``AsyncScheduler._update_request_with_output`` is gone, its placeholder and block caching moved into
    ``Scheduler.update_from_output``. Continuum overrides neither: nothing to do.
  - ``KVCacheManager.get_computed_blocks(request, max_cache_hit_length)`` gained a bound. Continuum never calls
    it (allocating a hit takes block references); its side-effect-free lookup bounds itself by the request's own
    limit, `max_cache_hit_length`.
  - A waiting request that gets zero tokens (encoder budget, MTP look-ahead) is skipped, no longer ends the
    scan. vLLM puts it back with ``prepend_request``, which `continuum.sched.ordering.ProgramQueue` answers by
    its key: nothing to do (text-only requests never get zero tokens).
  - The CPU KV tier's ``CachePolicy.insert(key, chunk, req_context)`` gained the storing request.
    `continuum.sched.offload_policy.ProgramAwarePolicy.insert` takes it when given.
  - vLLM needs torch 2.14 (0.32: 2.13): the Makefile's ``VLLM=`` set-ups install the torch the wheel names.
  - The ``serve`` command's helpers moved to ``vllm.entrypoints.common``: ``cli_args`` (``make_arg_parser``,
    ``validate_parsed_serve_args``; was ``vllm.entrypoints.launchers.cli_args``) and ``startup.cli_env_setup``
    (was ``vllm.entrypoints.serve.utils.api_utils``). `continuum serve` finds them with `serve_cli_args` and
    `cli_env_setup`.

0.34
  - Resumed (preempted) requests come back in ``scheduled_new_reqs`` and ``CachedRequestData.resumed_req_ids``
    is removed. 0.32 and 0.33 did the same under their V2 model runner, the default wherever Triton runs (a
    GPU), so there the resumed turn looked admitted twice. A turn is admitted once: `first_admissions`.
  - ``Request.skip_reading_prefix_cache`` became ``prefix_cache_hit_limit`` (0: no reads; a prompt-logprobs
    request reads up to its first scored token): `max_cache_hit_length`.
  - ``BlockPool.free_blocks(blocks, evict_first=False)``: freed cached blocks can go to the front of the
    eviction order. Pins release their blocks with the positional form, which keeps vLLM's LRU order on every
    release: nothing to do.
  - A third waiting queue, ``async_kv_waiting`` (with ``--max-num-inflight-kv-loads`` and a KV connector),
    drained by vLLM's own policy like ``kv_holding_waiting``. Only ``waiting`` is Continuum's:
    `vllm_waiting_queues` names vLLM's.
  - ``ModelRunnerOutput.req_id_to_index`` is gone (the scheduler indexes ``req_ids`` itself); the simulator
    fabricates outputs through `model_runner_output`.
  - ``CachePolicy.touch`` left the interface (``on_request_finished`` is abstract instead); the program-aware
    policy keeps ``touch`` for 0.32-0.33 and already implements the rest.
  - vLLM's CPU platform on x86 wants an active Triton driver: only the GPU-less contract tests meet it (the
    Makefile's ``test-vllm`` says how).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Any

from vllm.v1.core.sched.request_queue import RequestQueue
from vllm.v1.outputs import ModelRunnerOutput
from vllm.v1.request import Request

# 0.34 dropped the field; before it, update_from_output looked every request up in it.
_RUNNER_OUTPUT_INDEXED = "req_id_to_index" in {f.name for f in dataclasses.fields(ModelRunnerOutput)}
# Queues vLLM drains by its own policy before or beside `waiting` (0.34 added the second).
_VLLM_QUEUES = ("kv_holding_waiting", "async_kv_waiting")


def model_runner_output(req_ids: list[str], **fields: Any) -> ModelRunnerOutput:
    """A ``ModelRunnerOutput`` for ``req_ids`` (sampled tokens, connector output, ... in ``fields``)."""
    if _RUNNER_OUTPUT_INDEXED:
        fields["req_id_to_index"] = {r: i for i, r in enumerate(req_ids)}
    return ModelRunnerOutput(req_ids=list(req_ids), **fields)


def first_admissions(out: Any, requests: Mapping[str, Request]) -> Iterator[tuple[Any, Request]]:
    """(NewRequestData, request) for each request a step admitted for the first time: a preempted request that
    resumes is no new turn, though 0.34 (and 0.32's V2 model runner) lists it among the new ones."""
    for new in out.scheduled_new_reqs:
        request = requests.get(new.req_id)
        if request is not None and request.num_preemptions == 0:  # vLLM counts each preemption
            yield new, request


def max_cache_hit_length(request: Request) -> int:
    """The longest prefix-cache hit vLLM would give ``request`` (its last token is always computed)."""
    bound = getattr(request, "get_max_cache_hit_length", None)
    if bound is not None:  # 0.34: prefix_cache_hit_limit
        return bound()
    return 0 if request.skip_reading_prefix_cache else request.num_tokens - 1


def vllm_waiting_queues(scheduler: Any) -> list[RequestQueue]:
    """vLLM's own waiting queues beside Continuum's ``waiting``, which this release has."""
    return [getattr(scheduler, name) for name in _VLLM_QUEUES if hasattr(scheduler, name)]


def serve_cli_args() -> ModuleType:
    """vLLM's ``serve`` argument module (``make_arg_parser``, ``validate_parsed_serve_args``)."""
    try:
        return importlib.import_module("vllm.entrypoints.common.cli_args")  # 0.33
    except ModuleNotFoundError:
        return importlib.import_module("vllm.entrypoints.launchers.cli_args")


def cli_env_setup() -> None:
    """vLLM's process set-up before its server parses its flags."""
    try:
        from vllm.entrypoints.common.startup import cli_env_setup as setup  # 0.33
    except ModuleNotFoundError:
        from vllm.entrypoints.serve.utils.api_utils import cli_env_setup as setup
    setup()
