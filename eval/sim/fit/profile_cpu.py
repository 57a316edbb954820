"""`continuum profile`: measure the live CPU engine's step times and fit the simulator's ``cpu`` profile.

Two ways to measure, both with the engine shape `continuum serve` gets on a CPU machine (block size,
``max_num_seqs`` 128, ``max_num_batched_tokens`` 2048, the same KV budget):

``server`` (default): `continuum serve MODEL --policy vllm` is started and driven the way the live replay
drives it (streaming ``/v1/completions`` with token-id prompts, ``ignore_eos``). On a small machine the API
process (HTTP, streaming, detokenization) and the client share the cores with the engine and slow its steps
down, so this is what a simulation that is compared with live runs must be fitted on. Observations:

- decode: B concurrent requests (B = 1 .. 64) with prompts of 64 .. 2,048 tokens, run twice: once with 32
  output tokens past the last prefill, once with 128 more; the difference of the two completion times over 128
  is one step of B requests decoding, as the client sees it (the API process's work per streamed token
  included). Gaps between streamed chunks are no use: on a busy machine several chunks reach the client in
  one read.
- first token: one request of 4 .. 6,000 tokens (chunked past ``max_num_batched_tokens``) and one output
  token; its TTFT is the client overhead plus the prefill steps.

The fit (non-negative least squares on relative error) solves for the step model's coefficients and the
client overhead together: a decode observation is one step, a TTFT observation is the overhead plus the sum of
its chunks' steps.

``engine``: vLLM's engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``); every
``EngineCore.step`` (schedule, forward, update) is timed exactly, with the batch the scheduler chose, over a
grid of prefills, decode batches and mixed steps (median over repetitions). No API process is involved, so
this measures the engine alone (and the client overhead, when ``client`` is on, from one-token requests).

Either way the step model is step = c0 + c_tok*tokens + c_seq*requests + c_samp*sampled + c_attn*causal
pairs + c_kv*decode context. The JSON records the coefficients, the fit error, the client overhead, the engine
shape and KV pool, the machine and its load, and the raw observations. Timings on a shared machine move with
its load: re-fit on the machine and at the load where the live runs happen.

A script that builds vLLM's engine must guard its entry point (``if __name__ == "__main__":``); this module
does, and `profile_cpu` runs the measurement in a child process so the caller stays clean.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from continuum.serve import models
from continuum.serve.launch import ServerProcess
from continuum.serve.verbs import setup_logging
from continuum_agents.session import KEEPALIVE_EXPIRY_S
from continuum_eval.sim.cost.costmodel import FEATURES, LinearCostModel, StepBatch, features, nnls

FITTED_DIR = Path(__file__).resolve().parents[1] / "fitted"
CPU_KV_BYTES = 2 * 1024**3  # what `continuum serve` reserves for KV on a CPU machine
DECODE_EXTRA = 128  # output tokens by which the two runs of a decode observation differ


class ProfileError(RuntimeError):
    pass


def engine_grid(quick: bool) -> list[dict]:
    """Scenarios: each a list of (delay in engine steps, prompt tokens, output tokens) requests."""
    scen: list[dict] = []
    prefills = (16, 128, 512, 1024, 2048, 4096) if not quick else (64, 512, 2048)
    for n in prefills:
        scen.append({"name": f"prefill{n}", "reqs": [(0, n, 1)]})
    batches = (1, 2, 4, 8, 16, 32, 64) if not quick else (1, 8, 32)
    contexts = (64, 512, 2048) if not quick else (128, 1024)
    for ctx in contexts:
        for b in batches:
            if b * ctx > 65536:
                continue
            scen.append({"name": f"decode{b}x{ctx}", "reqs": [(0, ctx, 24)] * b})
    mixed = ((8, 256, 512), (16, 512, 1024), (4, 1024, 2048)) if not quick else ((8, 256, 512),)
    for b, ctx, newp in mixed:
        reqs = [(0, ctx, 40)] * b + [(6, newp, 8), (12, newp // 2, 8)]
        scen.append({"name": f"mixed{b}x{ctx}+{newp}", "reqs": reqs})
    return scen


def _batch_of(sched_out: Any, scheduler: Any) -> StepBatch:
    b = StepBatch()
    for rid, q in sched_out.num_scheduled_tokens.items():
        r = scheduler.requests.get(rid)
        if r is None:
            continue
        c = r.num_computed_tokens
        b.add(q, c, c >= r.num_tokens)
    return b


def measure(model: str, block_size: int, max_model_len: int, max_num_seqs: int, max_num_batched_tokens: int,
            repeats: int, quick: bool) -> dict:
    """Run the grid on an in-process engine; returns engine facts and (batch, seconds) points."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # read when vLLM is imported: set it first
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    path = models.resolve(model)
    kwargs: dict[str, Any] = dict(model=path, block_size=block_size, max_model_len=max_model_len,
                                  max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens,
                                  enable_prefix_caching=True, kv_cache_memory_bytes=CPU_KV_BYTES,
                                  skip_tokenizer_init=True)
    if model == "smollm2-135m":
        kwargs["dtype"] = "float32"  # as `continuum serve` runs it
    llm = LLM(**kwargs)
    engine = llm.llm_engine
    core = engine.engine_core.engine_core  # in-process EngineCore
    scheduler = core.scheduler
    num_blocks = int(engine.vllm_config.cache_config.num_gpu_blocks or 0)

    # (scenario, step index) -> the batch and its time in each repetition: the median over repetitions is
    # robust to the stalls a shared machine causes now and then.
    samples: dict[tuple[str, int], tuple[StepBatch, list[float]]] = {}
    current: dict[str, Any] = {}
    orig_schedule = scheduler.schedule
    orig_step = core.step_fn

    def schedule(*a: Any, **k: Any):
        out = orig_schedule(*a, **k)
        current["batch"] = _batch_of(out, scheduler)
        return out

    def step(*a: Any, **k: Any):
        current.pop("batch", None)
        t0 = time.perf_counter()
        res = orig_step(*a, **k)
        dt = time.perf_counter() - t0
        b = current.get("batch")
        if b is not None and b.tokens > 0 and current.get("record"):
            key = (current["scenario"], current["step"])
            samples.setdefault(key, (b, []))[1].append(dt)
        return res

    scheduler.schedule = schedule
    core.step_fn = step
    rng = random.Random(0)
    counter = 0
    scenarios = engine_grid(quick)
    for rep in range(repeats + 1):
        current["record"] = rep > 0  # pass 0 warms up
        for sc in scenarios:
            todo = sorted(sc["reqs"], key=lambda r: r[0])
            steps = 0
            current["scenario"] = sc["name"]
            while todo or engine.has_unfinished_requests():
                while todo and todo[0][0] <= steps:
                    _, n, out = todo.pop(0)
                    counter += 1
                    ids = [rng.randrange(1000, 30000) for _ in range(n)]
                    engine.add_request(f"p{counter}", TokensPrompt(prompt_token_ids=ids),
                                       SamplingParams(max_tokens=out, ignore_eos=True, detokenize=False))
                current["step"] = steps
                engine.step()
                steps += 1
        engine.reset_prefix_cache()
    points = [(b, sorted(ts)[len(ts) // 2]) for b, ts in samples.values()]
    spread = [max(ts) / min(ts) for _, ts in samples.values() if len(ts) > 1 and min(ts) > 0]
    return {"num_blocks": num_blocks, "points": points,
            "max_over_min_median": sorted(spread)[len(spread) // 2] if spread else 1.0}


def fit(points: list[tuple[StepBatch, float]], meta: dict) -> LinearCostModel:
    if len(points) < len(FEATURES) * 3:
        raise ProfileError(f"too few measured steps to fit ({len(points)})")
    return LinearCostModel.fit([b for b, _ in points], [s for _, s in points], meta=meta)


def client_overhead(model: str, engine_args: list[str], cost: LinearCostModel, samples: int = 15) -> float:
    """Median end-to-end latency of one-token requests through `continuum serve`, minus their step time."""
    lat = []
    with ServerProcess(model, ["--policy", "vllm", *engine_args], startup_timeout_s=900) as srv:
        for i in range(samples + 3):
            body = {"model": model, "prompt": [1000 + i, 2000 + i, 3000 + i, 4000 + i], "max_tokens": 1,
                    "ignore_eos": True, "stream": True}
            t0 = time.perf_counter()
            with httpx.stream("POST", srv.base_url + "/v1/completions", json=body, timeout=60) as r:
                for _ in r.iter_lines():
                    pass
            if i >= 3:
                lat.append(time.perf_counter() - t0)
            time.sleep(0.05)
    lat.sort()
    step = cost.step_time(StepBatch.prefill(4))
    return max(0.0, lat[len(lat) // 2] - step)


# -- through the server ------------------------------------------------------------------------------------------
def server_plan(quick: bool) -> tuple[list[tuple[int, int]], list[int]]:
    """(batch, prompt) decode scenarios and first-token prompt lengths."""
    batches = (1, 2, 4, 8, 16, 32, 64) if not quick else (1, 8, 32)
    # Decode contexts where agent turns live (the fidelity trace's prompts are 0.2k to 3k tokens). Past ~4k the
    # streamed-token cost behaves differently (the API process falls behind and merges tokens into chunks).
    prompts = (64, 512, 2048) if not quick else (128, 1024)
    decode = [(b, n) for n in prompts for b in batches if b * n <= 65536]
    ttft = [4, 64, 256, 1024, 2048, 4096, 6000] if not quick else [4, 512, 3000]
    return decode, ttft


async def _stream(client: Any, url: str, model: str, prompt: list[int], max_tokens: int) -> list[tuple[float, int]]:
    """(arrival time, tokens in chunk) of each streamed chunk of one completion."""
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "ignore_eos": True, "temperature": 0.0,
            "stream": True, "return_token_ids": True}
    chunks: list[tuple[float, int]] = []
    async with client.stream("POST", url + "/v1/completions", json=body) as r:
        if r.status_code != 200:
            raise ProfileError(f"server answered HTTP {r.status_code}: {(await r.aread())[:200]!r}")
        async for line in r.aiter_lines():
            if not line.startswith("data:") or line.strip() == "data: [DONE]":
                continue
            chunk = json.loads(line[5:])
            for choice in chunk.get("choices") or []:
                n = len(choice.get("token_ids") or []) or (1 if choice.get("text") else 0)
                if n:
                    chunks.append((time.perf_counter(), n))
    return chunks


def summed_features(batches: list[StepBatch]) -> list[float]:
    """The step model's features summed over ``batches`` (steps whose times add up in one observation)."""
    rows = [features(b) for b in batches]
    return [sum(col) for col in zip(*rows)]


def prefill_chunks(n: int, chunk: int) -> list[StepBatch]:
    """The steps that prefill ``n`` prompt tokens, ``chunk`` at a time; the last one samples."""
    out, done = [], 0
    while done < n:
        q = min(chunk, n - done)
        b = StepBatch()
        b.add(q, done + q, done + q >= n)
        out.append(b)
        done += q
    return out


def measure_server(model: str, engine_args: list[str], max_num_batched_tokens: int, repeats: int,
                   quick: bool) -> list[dict]:
    """Observations through `continuum serve`: each {kind, x (features + overhead), seconds}."""
    decode, ttft = server_plan(quick)
    rng = random.Random(0)
    gen_out = 32

    def ids(n: int) -> list[int]:
        return [rng.randrange(1000, 30000) for _ in range(n)]

    async def drive(url: str) -> list[dict]:
        obs: list[dict] = []
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=128,
                             keepalive_expiry=KEEPALIVE_EXPIRY_S)
        async with httpx.AsyncClient(timeout=httpx.Timeout(600.0), limits=limits) as client:
            await _stream(client, url, model, ids(16), 4)  # warm-up
            for rep in range(repeats):
                for n in ttft:
                    t0 = time.perf_counter()
                    chunks = await _stream(client, url, model, ids(n), 1)
                    x = summed_features(prefill_chunks(n, max_num_batched_tokens)) + [1.0]
                    obs.append({"kind": f"ttft{n}", "x": x, "seconds": chunks[0][0] - t0, "rep": rep})
                for b, n in decode:
                    # Two runs that differ only in DECODE_EXTRA more output tokens: the difference of their
                    # completion times is that many steps of B requests decoding, as the client sees them (prefill,
                    # queueing and client time cancel out).
                    base = gen_out + -(-b * n // max_num_batched_tokens)
                    ends = []
                    for out in (base, base + DECODE_EXTRA):
                        t0 = time.perf_counter()
                        results = await asyncio.gather(*(_stream(client, url, model, ids(n), out)
                                                         for _ in range(b)))
                        ends.append(max(c[-1][0] for c in results) - t0)
                    batch = StepBatch.decode([n + base + DECODE_EXTRA // 2] * b)
                    obs.append({"kind": f"decode{b}x{n}", "x": summed_features([batch]) + [0.0],
                                "seconds": max(ends[1] - ends[0], 0.0) / DECODE_EXTRA, "rep": rep})
        return obs

    log = Path(tempfile.gettempdir()) / "continuum-profile-serve.log"
    with ServerProcess(model, ["--policy", "vllm", *engine_args], startup_timeout_s=900, log_path=log) as srv:
        try:
            return asyncio.run(drive(srv.base_url))
        except (httpx.HTTPError, OSError) as exc:
            raise ProfileError(f"request to the server failed: {type(exc).__name__}: {exc} (server log: {log})")


def fit_server(obs: list[dict], meta: dict) -> tuple[LinearCostModel, float]:
    """Step-model coefficients and the client overhead, fitted together (see the module docstring)."""
    if len({o["kind"] for o in obs}) < len(FEATURES) + 1:
        raise ProfileError(f"too few distinct observations to fit ({len(obs)})")
    # Mean over the repetitions of each observation kind: with many concurrent streams the API process sometimes
    # keeps up with the engine token by token and sometimes merges several tokens into one chunk, and a replay
    # sees both. A decode difference <= 0 is a stall in the shorter run, not a measurement: left out.
    kinds: dict[str, list[dict]] = {}
    for o in obs:
        if o["seconds"] > 0:
            kinds.setdefault(o["kind"], []).append(o)
    xs, ys = [], []
    for group in kinds.values():
        xs.append(group[0]["x"])
        ys.append(sum(o["seconds"] for o in group) / len(group))
    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    w = 1.0 / np.maximum(y, 1e-6)
    coef = nnls(x * w[:, None], y * w)
    model = LinearCostModel(dict(zip(FEATURES, map(float, coef[:-1]))), dict(meta))
    overhead = float(coef[-1])
    pred = x @ coef
    rel = np.abs(pred / y - 1)
    model.meta.update({"fit_points": len(y), "fit_median_rel_err": float(np.median(rel)),
                       "fit_p90_rel_err": float(np.quantile(rel, 0.9))})
    return model, overhead


def run(model: str, out: Path, block_size: int, num_blocks: int | None, max_model_len: int, max_num_seqs: int,
        max_num_batched_tokens: int, repeats: int, quick: bool, client: bool, method: str = "server") -> Path:
    t0 = time.time()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    engine_args = ["--block-size", str(block_size), "--max-model-len", str(max_model_len),
                   "--max-num-seqs", str(max_num_seqs), "--max-num-batched-tokens", str(max_num_batched_tokens),
                   "--enable-prefix-caching"]
    extra: dict[str, Any] = {}
    if method == "server":
        obs = measure_server(model, engine_args, max_num_batched_tokens, repeats, quick)
        cost, overhead = fit_server(obs, {"model": model, "method": method})
        measured_blocks = None
        extra["observations"] = [{"kind": o["kind"], "seconds": round(o["seconds"], 6)} for o in obs]
    else:
        m = measure(model, block_size, max_model_len, max_num_seqs, max_num_batched_tokens, repeats, quick)
        cost = fit(m["points"], {"model": model, "method": method})
        overhead = client_overhead(model, engine_args, cost) if client else 0.0
        measured_blocks = m["num_blocks"]
        extra["repeat_spread"] = m["max_over_min_median"]
        extra["points"] = [[b.tokens, b.seqs, b.sampled, b.prefill_pairs, b.prefill_kv, b.decode_kv, round(s, 6)]
                           for b, s in m["points"]]
        extra["points_columns"] = ["tokens", "seqs", "sampled", "prefill_pairs", "prefill_kv", "decode_kv",
                                   "seconds"]
    if not (num_blocks or measured_blocks):
        # vLLM's CPU KV budget of `continuum serve` divided by this model's bytes per block.
        num_blocks = _blocks_for_budget(model, block_size)
    data = {
        "name": "cpu", "model": model, "method": method, "created": time.strftime("%Y-%m-%d"),
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version(), "load_average_at_start": load},
        "engine": {"block_size": block_size, "num_blocks": num_blocks or measured_blocks,
                   "max_model_len": max_model_len, "max_num_seqs": max_num_seqs,
                   "max_num_batched_tokens": max_num_batched_tokens},
        "coef": cost.describe()["coef"],
        "fit_points": cost.meta["fit_points"], "fit_median_rel_err": cost.meta["fit_median_rel_err"],
        "fit_p90_rel_err": cost.meta["fit_p90_rel_err"],
        "client_overhead_s": overhead,
        "measure_wall_s": round(time.time() - t0, 1),
        **extra,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1) + "\n")
    return out


def _blocks_for_budget(model: str, block_size: int) -> int:
    cfg = json.loads((Path(models.resolve(model)) / "config.json").read_text())
    head = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    dtype = 4 if model == "smollm2-135m" else 2  # `continuum serve` runs smollm2-135m in float32
    per_block = 2 * cfg["num_hidden_layers"] * cfg["num_key_value_heads"] * head * dtype * block_size
    return CPU_KV_BYTES // per_block


def profile_cpu(model: str = "tiny", out: str | Path | None = None, block_size: int = 32,
                num_blocks: int | None = None, max_model_len: int = 8192, max_num_seqs: int = 128,
                max_num_batched_tokens: int = 2048, repeats: int = 3, quick: bool = False,
                client: bool = True, method: str = "server") -> Path:
    """Measure and fit in a child process (vLLM's engine wants a guarded main); returns the JSON path."""
    path = Path(out) if out else FITTED_DIR / "cpu.json"
    cmd = [sys.executable, "-m", "continuum_eval.sim.fit.profile_cpu", "--model", model, "--out", str(path),
           "--block-size", str(block_size), "--max-model-len", str(max_model_len), "--max-num-seqs",
           str(max_num_seqs), "--max-num-batched-tokens", str(max_num_batched_tokens), "--repeats", str(repeats),
           "--method", method]
    if num_blocks:
        cmd += ["--num-blocks", str(num_blocks)]
    if quick:
        cmd.append("--quick")
    if not client:
        cmd.append("--no-client")
    proc = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[3])
    if proc.returncode != 0 or not path.exists():
        raise ProfileError(f"profiling failed (exit {proc.returncode})")
    return path


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    p = argparse.ArgumentParser(prog="python -m continuum_eval.sim.fit.profile_cpu")
    p.add_argument("--model", default="tiny")
    p.add_argument("--out", default=str(FITTED_DIR / "cpu.json"))
    p.add_argument("--block-size", type=int, default=32)
    p.add_argument("--num-blocks", type=int, default=None)
    p.add_argument("--max-model-len", type=int, default=8192)
    p.add_argument("--max-num-seqs", type=int, default=128)
    p.add_argument("--max-num-batched-tokens", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--no-client", dest="client", action="store_false")
    p.add_argument("--method", choices=("server", "engine"), default="server")
    a = p.parse_args(argv)
    path = run(a.model, Path(a.out), a.block_size, a.num_blocks, a.max_model_len, a.max_num_seqs,
               a.max_num_batched_tokens, a.repeats, a.quick, a.client, a.method)
    data = json.loads(path.read_text())
    print(json.dumps({k: data[k] for k in ("coef", "fit_points", "fit_median_rel_err", "fit_p90_rel_err",
                                            "client_overhead_s", "engine")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
