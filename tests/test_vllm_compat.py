"""The seam between Continuum and the vLLM release underneath (`continuum.sched.compat`): each helper gives the same
answer on 0.32, 0.33 and 0.34 (`make test-vllm VLLM=...` runs this file on the others), and the contract suite
lists every test module that drives vLLM's scheduler."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from vllm.sampling_params import SamplingParams
from vllm.v1.core.sched.output import CachedRequestData
from vllm.v1.kv_offload.base import ReqContext, make_offload_key
from vllm.v1.kv_offload.cpu.policies.base import ChunkStatus
from vllm.v1.request import Request

from continuum.sched.compat import (
    first_admissions,
    max_cache_hit_length,
    model_runner_output,
    serve_cli_args,
    vllm_waiting_queues,
)
from continuum.sched.offload_policy import ProgramAwarePolicy
from continuum.sched.ordering import ProgramQueue
from continuum.sched.scheduler import scheduler_for
from continuum_eval.sim.engine.vllm_offline import build_scheduler, make_request, run_step

ROOT = Path(__file__).resolve().parents[1]


def make(policy: str, max_num_seqs: int = 8):
    cls, ctor = scheduler_for(policy)
    return build_scheduler(cls, num_blocks=256, block_size=32, max_num_seqs=max_num_seqs, **ctor)


def test_a_preempted_turn_that_resumes_is_admitted_once():
    s = make("ls-be", max_num_seqs=1)
    s.add_request(make_request("be", list(range(100, 164)), 6, session_id="BE"))
    listed, admitted, preempted = [], [], []
    for step in range(20):
        if step == 1:  # latency-sensitive work arrives while "be" runs: "be" is preempted, and resumes later
            s.add_request(make_request("ls", list(range(5000, 5064)), 2, session_id="LS", **{"class": "ls"}))
        out, _ = run_step(s)
        listed += [n.req_id for n in out.scheduled_new_reqs]
        admitted += [r.request_id for _, r in first_admissions(out, s.requests)]
        preempted += list(out.preempted_req_ids)
    assert not s.requests and preempted == ["be"]  # both finished
    assert admitted == ["be", "ls"]
    # vLLM lists the resumed request with the new ones under its V2 model runner (0.32-0.33: the default where
    # Triton runs), and always from 0.34 on (the flag and CachedRequestData.resumed_req_ids are gone).
    resumed_as_new = getattr(s, "use_v2_model_runner", True)
    assert resumed_as_new or "resumed_req_ids" in {f.name for f in dataclasses.fields(CachedRequestData)}
    assert listed == (["be", "ls", "be"] if resumed_as_new else ["be", "ls"])


def test_the_cache_hit_bound_is_the_requests_own():
    s = make("continuum")
    prompt = list(range(100, 200))
    s.add_request(make_request("first", prompt, 1, session_id="A"))
    for _ in range(4):
        run_step(s)
    plain = make_request("again", prompt + [7], 1)
    blind = Request(request_id="blind", prompt_token_ids=prompt + [7], pooling_params=None,
                    sampling_params=SamplingParams(max_tokens=1, skip_reading_prefix_cache=True),
                    block_hasher=None)
    blind.block_hashes = list(plain.block_hashes)
    assert max_cache_hit_length(plain) == plain.num_tokens - 1 and max_cache_hit_length(blind) == 0
    assert s.cached_tokens(plain) == 96 and s.cached_tokens(blind) == 0  # three full blocks of 32, or none


def test_vllms_own_waiting_queues_stay_vllms():
    s = make("continuum")
    queues = vllm_waiting_queues(s)
    assert s.kv_holding_waiting in queues and not any(isinstance(q, ProgramQueue) for q in queues)
    assert (getattr(s, "async_kv_waiting", None) in queues) == hasattr(s, "async_kv_waiting")
    assert isinstance(s.waiting, ProgramQueue)


def test_a_chunk_gets_its_program_from_the_store_miss_or_from_the_insert():
    policy = ProgramAwarePolicy(cache_capacity=8)
    policy.request_program("r1", "P")
    missed, told = make_offload_key(b"missed", 0), make_offload_key(b"told", 0)
    policy.on_store_miss([missed], ReqContext("r1"))  # 0.32: the program comes from the miss
    policy.insert(missed, ChunkStatus(0))
    policy.insert(told, ChunkStatus(1), ReqContext("r1"))  # 0.33+: the insert names the request
    assert policy.home[missed] == policy.home[told] == "P"


def test_a_fabricated_output_is_indexed_as_this_vllm_expects():
    mro = model_runner_output(["a", "b"], sampled_token_ids=[[1], [2]])
    assert mro.req_ids == ["a", "b"] and mro.sampled_token_ids == [[1], [2]]
    if hasattr(mro, "req_id_to_index"):
        assert mro.req_id_to_index == {"a": 0, "b": 1}


def test_the_serve_cli_helpers_are_found():
    cli_args = serve_cli_args()
    assert callable(cli_args.make_arg_parser) and callable(cli_args.validate_parsed_serve_args)


# -- the contract suite covers every test that drives vLLM's scheduler ----------------------------------------------
DRIVES_THE_SCHEDULER = re.compile(r"build_scheduler|scheduler_for|ContinuumScheduler|sched\.offload_policy|"
                                  r"continuum_eval\.sim\.(engine|run|bound|cli)|from continuum_eval\.sim import")


def contract_tests() -> set[str]:
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    line = next(ln for ln in text.splitlines() if ln.startswith("CONTRACT_TESTS :="))
    return set(line.split(":=", 1)[1].split())


def test_every_module_that_drives_the_scheduler_is_in_the_contract_suite():
    drives = {f"tests/{p.name}" for p in (ROOT / "tests").glob("test_*.py")
              if DRIVES_THE_SCHEDULER.search(p.read_text())}
    listed = contract_tests()
    assert sorted(drives - listed) == []
    assert all((ROOT / t).exists() for t in listed)
