"""vLLM schedulers built in-process without an engine or weights: for the simulator, tests and benchmarks.

The scheduler, KV cache manager and block pool are vLLM's real ones; only the model config comes from a
local folder (its config.json and tokenizer are read, never its weights) and the KV pool is sized by hand.
"""

from __future__ import annotations

from typing import Any

import torch
from vllm.config import CacheConfig, ModelConfig, SchedulerConfig, VllmConfig
from vllm.sampling_params import SamplingParams
from vllm.utils.hashing import sha256
from vllm.v1.core.kv_cache_utils import get_request_block_hasher, init_none_hash
from vllm.v1.core.sched.scheduler import Scheduler
from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec
from vllm.v1.outputs import ModelRunnerOutput
from vllm.v1.request import Request
from vllm.v1.structured_output import StructuredOutputManager

from continuum.serve import models


def vllm_config(model: str = "tiny", block_size: int = 32, max_model_len: int = 8192,
                max_num_seqs: int = 64, max_num_batched_tokens: int = 2048,
                enable_prefix_caching: bool = True, async_scheduling: bool = False) -> VllmConfig:
    model_config = ModelConfig(model=models.resolve(model), dtype="bfloat16", max_model_len=max_model_len,
                               skip_tokenizer_init=True)
    scheduler_config = SchedulerConfig(max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens,
                                       max_model_len=max_model_len, enable_chunked_prefill=True,
                                       async_scheduling=async_scheduling, is_encoder_decoder=False)
    cache_config = CacheConfig(block_size=block_size, enable_prefix_caching=enable_prefix_caching)
    return VllmConfig(model_config=model_config, cache_config=cache_config, scheduler_config=scheduler_config)


def kv_cache_config(num_blocks: int, block_size: int) -> KVCacheConfig:
    spec = FullAttentionSpec(block_size=block_size, num_kv_heads=1, head_size=32, dtype=torch.bfloat16)
    return KVCacheConfig(num_blocks=num_blocks, kv_cache_tensors=[],
                         kv_cache_groups=[KVCacheGroupSpec(["layer.0"], spec)])


def build_scheduler(cls: Any = Scheduler, num_blocks: int = 1024, block_size: int = 32,
                    continuum_config: Any = None, **config: Any) -> Any:
    """A real vLLM scheduler (``cls``: vLLM's or Continuum's) over a pool of ``num_blocks`` KV blocks.

    ``continuum_config`` goes to a Continuum scheduler (as `continuum.policy.presets.scheduler_for` returns it);
    other keywords shape the vLLM config (see `vllm_config`).
    """
    extra = {"continuum_config": continuum_config} if continuum_config is not None else {}
    cfg = vllm_config(block_size=block_size, **config)
    cfg.cache_config.num_gpu_blocks = num_blocks  # what the engine sets after profiling memory
    return cls(vllm_config=cfg, kv_cache_config=kv_cache_config(num_blocks, block_size),
               structured_output_manager=StructuredOutputManager(cfg), block_size=block_size, log_stats=True,
               **extra)


_hasher = None


def make_request(request_id: str, prompt: list[int], max_tokens: int, block_size: int = 32,
                 session_id: str | None = None, arrival_time: float | None = None,
                 **xargs: Any) -> Request:
    """An engine request as vLLM's input processor would build it (block hashes included)."""
    global _hasher
    if _hasher is None:
        init_none_hash(sha256)
        _hasher = {}
    hasher = _hasher.setdefault(block_size, get_request_block_hasher(block_size, sha256))
    params = SamplingParams(max_tokens=max_tokens, ignore_eos=True, extra_args=xargs or None)
    return Request(request_id=request_id, prompt_token_ids=list(prompt), sampling_params=params,
                   pooling_params=None, arrival_time=arrival_time, block_hasher=hasher, session_id=session_id)


def fabricate_output(scheduler: Any, out: Any, next_token: Any = None) -> ModelRunnerOutput:
    """What a model runner would return for ``out``: one token for each request whose prefill is complete.

    ``next_token(request) -> int`` chooses the token (default: a fixed id well inside any vocabulary).
    """
    req_ids = list(out.num_scheduled_tokens)
    sampled: list[list[int]] = []
    for req_id in req_ids:
        request = scheduler.requests[req_id]
        done = request.num_computed_tokens >= request.num_tokens  # already advanced by schedule()
        sampled.append([next_token(request) if next_token else 1000] if done else [])
    return ModelRunnerOutput(req_ids=req_ids, req_id_to_index={r: i for i, r in enumerate(req_ids)},
                             sampled_token_ids=sampled)


def run_step(scheduler: Any, next_token: Any = None) -> tuple[Any, dict]:
    """One engine step without a model: schedule, fabricate the output, update. Returns (sched out, outputs)."""
    out = scheduler.schedule()
    engine_outputs = scheduler.update_from_output(out, fabricate_output(scheduler, out, next_token))
    return out, engine_outputs
