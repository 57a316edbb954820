"""`continuum profile`: measure the live CPU engine's step times and fit the simulator's ``cpu`` profile.

vLLM's engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) on an embedded model, with the engine
shape `continuum serve` gets on a CPU machine (block size, ``max_num_seqs`` 128, ``max_num_batched_tokens``
2048, the same KV budget). Every engine step (schedule, model forward, update: ``EngineCore.step``) is timed,
and the batch the scheduler chose for it is recorded as a `StepBatch`. The workload is a grid of

- single prefills of 16 .. 4,096 tokens (chunked past ``max_num_batched_tokens``),
- decode batches of 1 .. 64 requests at contexts of 64 .. 2,048 tokens,
- mixed steps: new prompts arriving while a batch decodes,

repeated ``repeats`` times (the first pass is a warm-up, dropped). `LinearCostModel.fit` then fits
step = c0 + c_tok*tokens + c_seq*requests + c_samp*sampled + c_attn*causal pairs + c_kv*decode context
(non-negative, relative error). The JSON records the coefficients, the fit error, the engine shape and the
KV pool, the machine, and the raw points.

Client overhead: the live replay talks HTTP to a server whose API process shares this machine's cores. The
time from an agent sending a turn to the engine having it, plus from the engine finishing to the agent seeing
it, is measured by ``--client`` (default on): `continuum serve` is started with the same engine shape and
small one-token requests are timed end to end; the overhead is their median latency minus the fitted step
time of the same request. The simulator adds it to every turn.

A script that builds vLLM's engine must guard its entry point (``if __name__ == "__main__":``); this module
does, and `profile_cpu` runs the measurement in a child process so the caller stays clean.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from eval.sim.costmodel import FEATURES, LinearCostModel, StepBatch

FITTED_DIR = Path(__file__).resolve().parent / "fitted"
CPU_KV_BYTES = 2 * 1024**3  # what `continuum serve` reserves for KV on a CPU machine


class ProfileError(RuntimeError):
    pass


def _grid(quick: bool) -> list[dict]:
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
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    import random

    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    from continuum import models

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
    scenarios = _grid(quick)
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
    import httpx

    from continuum.launch import ServerProcess

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


def run(model: str, out: Path, block_size: int, num_blocks: int | None, max_model_len: int, max_num_seqs: int,
        max_num_batched_tokens: int, repeats: int, quick: bool, client: bool) -> Path:
    t0 = time.time()
    m = measure(model, block_size, max_model_len, max_num_seqs, max_num_batched_tokens, repeats, quick)
    cost = fit(m["points"], {"model": model})
    engine_args = ["--block-size", str(block_size), "--max-model-len", str(max_model_len),
                   "--max-num-seqs", str(max_num_seqs), "--max-num-batched-tokens", str(max_num_batched_tokens),
                   "--enable-prefix-caching"]
    overhead = client_overhead(model, engine_args, cost) if client else 0.0
    data = {
        "name": "cpu", "model": model, "created": time.strftime("%Y-%m-%d"),
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version()},
        "engine": {"block_size": block_size, "num_blocks": num_blocks or m["num_blocks"],
                   "measured_num_blocks": m["num_blocks"], "max_model_len": max_model_len,
                   "max_num_seqs": max_num_seqs, "max_num_batched_tokens": max_num_batched_tokens},
        "coef": cost.describe()["coef"],
        "fit_points": cost.meta["fit_points"], "fit_median_rel_err": cost.meta["fit_median_rel_err"],
        "fit_p90_rel_err": cost.meta["fit_p90_rel_err"],
        "client_overhead_s": overhead,
        "measure_wall_s": round(time.time() - t0, 1),
        "repeat_spread": m["max_over_min_median"],
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "points": [[b.tokens, b.seqs, b.sampled, b.prefill_pairs, b.prefill_kv, b.decode_kv, round(s, 6)]
                   for b, s in m["points"]],
        "points_columns": ["tokens", "seqs", "sampled", "prefill_pairs", "prefill_kv", "decode_kv", "seconds"],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1) + "\n")
    return out


def profile_cpu(model: str = "tiny", out: str | Path | None = None, block_size: int = 32,
                num_blocks: int | None = None, max_model_len: int = 8192, max_num_seqs: int = 128,
                max_num_batched_tokens: int = 2048, repeats: int = 3, quick: bool = False,
                client: bool = True) -> Path:
    """Measure and fit in a child process (vLLM's engine wants a guarded main); returns the JSON path."""
    path = Path(out) if out else FITTED_DIR / "cpu.json"
    cmd = [sys.executable, "-m", "eval.sim.profile_cpu", "--model", model, "--out", str(path),
           "--block-size", str(block_size), "--max-model-len", str(max_model_len), "--max-num-seqs",
           str(max_num_seqs), "--max-num-batched-tokens", str(max_num_batched_tokens), "--repeats", str(repeats)]
    if num_blocks:
        cmd += ["--num-blocks", str(num_blocks)]
    if quick:
        cmd.append("--quick")
    if not client:
        cmd.append("--no-client")
    proc = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[2])
    if proc.returncode != 0 or not path.exists():
        raise ProfileError(f"profiling failed (exit {proc.returncode})")
    return path


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m eval.sim.profile_cpu")
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
    a = p.parse_args(argv)
    path = run(a.model, Path(a.out), a.block_size, a.num_blocks, a.max_model_len, a.max_num_seqs,
               a.max_num_batched_tokens, a.repeats, a.quick, a.client)
    data = json.loads(path.read_text())
    print(json.dumps({k: data[k] for k in ("coef", "fit_points", "fit_median_rel_err", "fit_p90_rel_err",
                                            "client_overhead_s", "engine")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
