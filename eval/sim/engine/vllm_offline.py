"""vLLM schedulers built in-process without an engine or weights: for the simulator, tests and benchmarks.

The scheduler, KV cache manager and block pool are vLLM's real ones; only the model config comes from a
local folder (its config.json and tokenizer are read, never its weights) and the KV pool is sized by hand.

With ``cpu_kv_gib`` the scheduler also gets vLLM's native host-memory KV tier, configured as
``vllm serve --kv-offloading-size G`` configures it: ``CacheConfig.kv_offloading_size`` is set and
``VllmConfig.__post_init__`` turns it into the OffloadingConnector's `KVTransferConfig` (``kv_role``
"kv_both", ``cpu_bytes_to_use`` = G GiB; vllm/config/vllm.py:1099-1133). Its scheduler side and CPU manager
are vLLM's; the transfers are completed by `continuum_eval.sim.engine.transfers`. The KV pool's page spec is
a small stand-in, so the tier is told the real bytes of one block through the pool's ``KVCacheTensor`` (the
offloading config divides its size by the block count: kv_connector/v1/offloading/config.py:137-147), and
``CPUOffloadingSpec`` then sizes the CPU pool in real blocks (kv_offload/cpu/spec.py:107-126).
``offload_prompt_only`` is left at vLLM's default (True, kv_offload/base.py:616-622): the
``--kv-offloading-size`` path does not set it (config/vllm.py:1099-1133).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from vllm.config import CacheConfig, ModelConfig, SchedulerConfig, VllmConfig
from vllm.sampling_params import SamplingParams
from vllm.utils.hashing import sha256
from vllm.v1.core.kv_cache_utils import get_request_block_hasher, init_none_hash
from vllm.v1.core.sched.scheduler import Scheduler
from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec, KVCacheTensor
from vllm.v1.outputs import ModelRunnerOutput
from vllm.v1.request import Request
from vllm.v1.structured_output import StructuredOutputManager

from continuum.sched.compat import model_runner_output
from continuum.sched.offload_policy import POLICY_MODULE, POLICY_NAME
from continuum.serve import models

# vLLM's registered CPU cache policies (kv_offload/cpu/policies/factory.py:86-91), and Continuum's program-aware
# one, loaded by vLLM from its module path as an out-of-tree policy (`continuum.sched.offload_policy`).
CPU_EVICTIONS = ("lru", "arc", "program")
OUT_OF_TREE_EVICTIONS = {"program": (POLICY_NAME, POLICY_MODULE)}
OFFLOADING_CONNECTOR = "OffloadingConnector"
# The connector's scheduler side warns once per store the CPU tier refuses (every CPU block pinned or still being
# written): in a simulation of thousands of turns, thousands of lines. Quiet, as a benchmark's log would be.
OFFLOADING_SCHEDULER_LOGGER = "vllm.distributed.kv_transfer.kv_connector.v1.offloading.scheduler"


def vllm_config(model: str = "tiny", block_size: int = 32, max_model_len: int = 8192,
                max_num_seqs: int = 64, max_num_batched_tokens: int = 2048,
                enable_prefix_caching: bool = True, async_scheduling: bool = False,
                cpu_kv_gib: float | None = None, cpu_eviction: str = "lru") -> VllmConfig:
    """vLLM's config of an engine; ``cpu_kv_gib``: ``--kv-offloading-size`` (a host KV tier of that many GiB)
    with the CPU manager's ``cpu_eviction`` policy (``program``: evict by program, which only a Continuum
    scheduler informs; under vLLM's own scheduler it is LRU)."""
    model_config = ModelConfig(model=models.resolve(model), dtype="bfloat16", max_model_len=max_model_len,
                               skip_tokenizer_init=True)
    scheduler_config = SchedulerConfig(max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens,
                                       max_model_len=max_model_len, enable_chunked_prefill=True,
                                       async_scheduling=async_scheduling, is_encoder_decoder=False)
    cache_config = CacheConfig(block_size=block_size, enable_prefix_caching=enable_prefix_caching,
                               kv_offloading_size=cpu_kv_gib)
    cfg = VllmConfig(model_config=model_config, cache_config=cache_config, scheduler_config=scheduler_config)
    if cpu_kv_gib is not None:
        if cpu_eviction not in CPU_EVICTIONS:
            raise ValueError(f"CPU eviction {cpu_eviction!r}: choose from {', '.join(CPU_EVICTIONS)}")
        kvt = cfg.kv_transfer_config
        if kvt is None or kvt.kv_connector != OFFLOADING_CONNECTOR:  # VLLM_USE_SIMPLE_KV_OFFLOAD picks another
            raise ValueError(f"--kv-offloading-size built {kvt and kvt.kv_connector!r}, not {OFFLOADING_CONNECTOR}")
        name, module = OUT_OF_TREE_EVICTIONS.get(cpu_eviction, (cpu_eviction, None))
        kvt.kv_connector_extra_config["eviction_policy"] = name  # read at kv_offload/cpu/spec.py:134-137
        if module is not None:
            kvt.kv_connector_extra_config["cache_policy_module_path"] = module
        logging.getLogger(OFFLOADING_SCHEDULER_LOGGER).setLevel(logging.ERROR)
    return cfg


def kv_cache_config(num_blocks: int, block_size: int, block_bytes: int = 0) -> KVCacheConfig:
    """The pool's layout: one stand-in layer; ``block_bytes`` > 0 declares the real bytes of one block (all
    layers, K and V), which only a KV-offloading tier reads."""
    spec = FullAttentionSpec(block_size=block_size, num_kv_heads=1, head_size=32, dtype=torch.bfloat16)
    tensors = [KVCacheTensor(size=num_blocks * block_bytes, layers=["layer.0"],
                             layer_stride=num_blocks * block_bytes, block_stride=block_bytes)] if block_bytes else []
    return KVCacheConfig(num_blocks=num_blocks, kv_cache_tensors=tensors,
                         kv_cache_groups=[KVCacheGroupSpec(["layer.0"], spec)])


def build_scheduler(cls: Any = Scheduler, num_blocks: int = 1024, block_size: int = 32,
                    continuum_config: Any = None, block_bytes: int = 0, **config: Any) -> Any:
    """A real vLLM scheduler (``cls``: vLLM's or Continuum's) over a pool of ``num_blocks`` KV blocks.

    ``continuum_config`` goes to a Continuum scheduler (as `continuum.policy.presets.scheduler_for` returns it);
    other keywords shape the vLLM config (see `vllm_config`; ``cpu_kv_gib`` adds vLLM's host KV tier, which
    needs ``block_bytes``, the real bytes of one KV block, to size its CPU pool).
    """
    if config.get("cpu_kv_gib") is not None and block_bytes <= 0:
        raise ValueError("a host KV tier needs the real bytes of one KV block (block_bytes)")
    extra = {"continuum_config": continuum_config} if continuum_config is not None else {}
    cfg = vllm_config(block_size=block_size, **config)
    cfg.cache_config.num_gpu_blocks = num_blocks  # what the engine sets after profiling memory
    layout = kv_cache_config(num_blocks, block_size, block_bytes if cfg.kv_transfer_config is not None else 0)
    return cls(vllm_config=cfg, kv_cache_config=layout,
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
    return model_runner_output(req_ids, sampled_token_ids=sampled)


def run_step(scheduler: Any, next_token: Any = None) -> tuple[Any, dict]:
    """One engine step without a model: schedule, fabricate the output, update. Returns (sched out, outputs)."""
    out = scheduler.schedule()
    engine_outputs = scheduler.update_from_output(out, fabricate_output(scheduler, out, next_token))
    return out, engine_outputs
