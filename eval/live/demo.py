"""The demo (`make demo`): a small live A/B of plain vLLM against Continuum on the embedded default model.

Both servers serve ``smollm2-135m`` with the same small KV pool (``--num-gpu-blocks-override``, block size 32), so the
agents compete for memory: while one agent runs a tool, plain vLLM's LRU prefix cache gives its blocks to the others and
the agent re-prefills its whole context when it returns; Continuum pins them for the predicted tool time. The trace is a
scaled-down SWE-bench one from `workloads` (first turns of each program, token counts scaled to fit the small pool, tool
times capped), replayed with the same arrivals and token ids against each server (`continuum_eval.live.bench`). Servers
run with ``--enforce-eager`` (no compilation: they start in about a minute). It prints the table, the Continuum / vLLM
ratio and where the report and plots are.

    python -m continuum_eval.live.demo [--out runs/demo] [--programs 8] [--jps 0.5] [--blocks 64]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from continuum.policy.presets import parse_policies
from continuum.policy.registry import ConfigError
from continuum.serve.verbs import setup_logging
from continuum_eval.live.bench import run_bench
from continuum_eval.live.settings import BenchConfig, BenchError
from continuum_eval.results.report import ratios
from continuum_workloads import Program, fit_program, generate_swebench, scale_program, trace_stats, write_trace

MODEL = "smollm2-135m"


def demo_trace(programs: int, seed: int, *, turns: int, token_scale: float, max_context: int, tool_scale: float,
               max_tool_s: float) -> list[Program]:
    """SWE-bench programs cut to their first ``turns`` turns, scaled down to fit a small model and pool."""
    out = []
    for p in generate_swebench(programs, seed=seed):
        kept = [t.model_copy(update={"tool_s": round(min(t.tool_s * tool_scale, max_tool_s), 3)})
                for t in p.turns[:turns]]
        kept[-1] = kept[-1].model_copy(update={"tool": None, "tool_s": 0.0})
        short = p.model_copy(update={"turns": kept, "meta": {**(p.meta or {}), "demo": {
            "turns": turns, "token_scale": token_scale, "tool_scale": tool_scale, "max_tool_s": max_tool_s}}})
        out.append(fit_program(scale_program(short, token_scale), max_context))
    return out


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    ap = argparse.ArgumentParser(prog="python -m continuum_eval.live.demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    ap.add_argument("--programs", type=int, default=8)
    ap.add_argument("--turns", type=int, default=5, help="turns kept per program")
    ap.add_argument("--jps", type=float, default=0.5, help="program arrival rate")
    ap.add_argument("--blocks", type=int, default=64, help="KV pool in blocks of 32 tokens")
    ap.add_argument("--max-model-len", type=int, default=1024)
    ap.add_argument("--token-scale", type=float, default=0.1)
    ap.add_argument("--tool-scale", type=float, default=2.0)
    ap.add_argument("--max-tool-s", type=float, default=6.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--policies", default="vllm,continuum")
    ap.add_argument("--no-progress", dest="progress", action="store_false")
    ap.add_argument("--trace-only", action="store_true", help="write OUT/trace.jsonl and stop (for other benches)")
    args = ap.parse_args(argv)
    try:
        policies = parse_policies(args.policies)
    except ConfigError as exc:
        print(f"demo: --policies: {exc}", file=sys.stderr)
        return 2

    t0 = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    programs = demo_trace(args.programs, args.seed, turns=args.turns, token_scale=args.token_scale,
                          max_context=args.max_model_len, tool_scale=args.tool_scale, max_tool_s=args.max_tool_s)
    trace = out / "trace.jsonl"
    write_trace(trace, programs)
    st = trace_stats(programs)
    print(f"Trace: {len(programs)} SWE-bench programs (scaled down), {sum(len(p.turns) for p in programs)} turns, "
          f"final context {min(p.final_context() for p in programs)}-{max(p.final_context() for p in programs)} "
          f"tokens, tool time {st.tool_s.mean:.2f}s mean per call; {trace}")
    if args.trace_only:
        return 0
    print(f"Servers: `continuum serve {MODEL} --policy vllm|continuum` with {args.blocks} KV blocks of 32 tokens "
          f"({args.blocks * 32} tokens for all agents together), arrivals {args.jps:g} programs/s", flush=True)
    cfg = BenchConfig(
        policies=policies, jps=[args.jps], out_dir=out,
        model=MODEL, seed=args.seed, block_size=32, num_gpu_blocks=args.blocks, max_model_len=args.max_model_len,
        server_args=["--enforce-eager"], progress=args.progress, trace=str(trace), request_timeout_s=300.0,
        title="Demo: Continuum vs plain vLLM (smollm2-135m, small KV pool)",
        notes=[f"trace {trace.name}: {len(programs)} programs, {args.jps:g} programs/s, {args.blocks} KV blocks",
               "same model, KV pool, flags, arrivals and token ids for both servers"])
    try:
        results = run_bench(programs, cfg)
    except BenchError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    for r in results:
        adm = ((r.get("meta") or {}).get("scheduler") or {}).get("admission") or {}
        if adm.get("mode") == "memory":
            print(f"\n{r['policy']}: {adm.get('held', 0)} of {len(r.get('per_program') or [])} programs waited at the "
                  f"admission door until the KV pool could hold them (mean wait {adm.get('door_wait_s_mean', 0):.1f}"
                  f" s, counted in their JCT)")
    for r in ratios(results):
        if r["mean_jct"] is not None:
            verdict = "faster" if r["mean_jct"] < 1 else "not faster"
            print(f"\n{r['policy']} / {r['baseline']} mean JCT = {r['mean_jct']:.3f} "
                  f"(p95 {r['p95_jct']:.3f}): Continuum is {verdict} than plain vLLM in this run")
    print(f"demo took {time.monotonic() - t0:.0f}s")
    return 0 if all(r["failed"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
