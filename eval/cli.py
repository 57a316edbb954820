"""The `continuum replay` and `continuum bench` verbs (`ReplayVerb`, `BenchVerb`; registered in the project's
`continuum.verbs` entry points). ``python -m continuum_eval.cli replay|bench ...`` runs them without the entry
point. Bad input raises `VerbError`: one line on stderr, exit status 2.

`continuum` imports every verb's module to build its ``--help``, so this one imports the machinery a verb runs
(the replay, the bench, the agents) only when the verb runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from continuum.policy.flags import add_policy_flags
from continuum.serve import verbs
from continuum.serve.argtypes import non_negative_float, positive_float, positive_int
from continuum.serve.verbs import VerbError
from continuum_eval.agents_bench.cli import add_agent_arguments
from continuum_eval.verb_args import add_host_tier_flags, policies_and_overrides, trace_programs

__all__ = ["ReplayVerb", "BenchVerb", "main"]

log = logging.getLogger(__name__)


def _jps_list(text: str) -> list[float]:
    rates = [positive_float(x.strip()) for x in text.split(",") if x.strip()]
    if not rates:
        raise argparse.ArgumentTypeError("give at least one rate")
    return rates


def _vocab_range(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition(":")
    try:
        a, b = int(lo), int(hi)
    except ValueError:
        raise argparse.ArgumentTypeError(f"want LO:HI token ids, not {text!r}") from None
    if not sep or not 0 <= a < b:
        raise argparse.ArgumentTypeError(f"want 0 <= LO < HI, not {text!r}")
    return a, b


def _add_common(p: argparse.ArgumentParser, trace_required: bool = True) -> None:
    p.add_argument("--trace", required=trace_required, help="trace JSONL (see workloads/README.md)")
    p.add_argument("--seed", type=int, default=0, help="seed of arrivals and synthetic token ids (default 0)")
    p.add_argument("--limit", type=positive_int, help="replay only the first N programs of the trace")
    p.add_argument("--max-context", type=positive_int,
                   help="fit each program into N tokens of context by scaling its token counts down "
                        "proportionally (default: the server's max_model_len)")
    p.add_argument("--token-scale", type=positive_float, default=1.0,
                   help="multiply every turn's token counts by F before fitting (default 1)")
    p.add_argument("--tool-scale", type=non_negative_float, default=1.0,
                   help="multiply every tool time by F (default 1)")
    p.add_argument("--no-hints", dest="hints", action="store_false",
                   help="do not send the tool / is_last_step hints (session ids are always sent)")
    p.add_argument("--request-timeout", type=positive_float, default=300.0,
                   help="seconds before a request counts as failed (default 300)")
    p.add_argument("--vocab-range", type=_vocab_range, default=(1000, 30000), metavar="LO:HI",
                   help="synthetic prompt tokens are drawn from [LO, HI) (default 1000:30000)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


class ReplayVerb:
    """`continuum replay`: one trace replayed against a running server, written as a result JSON."""

    name, passthrough = "replay", False

    def add_to(self, subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
        p = subparsers.add_parser("replay", help="replay a trace against a live OpenAI-compatible server",
                                  description="Act as the trace's agents against a server: send a turn, wait the "
                                              "tool time, send the next. Writes the result JSON.")
        _add_common(p)
        p.add_argument("--base-url", required=True, help="server address, e.g. http://127.0.0.1:8000")
        p.add_argument("--jps", type=positive_float,
                       help="program arrival rate (Poisson, seeded); default: the trace's arrival_s")
        p.add_argument("--out", required=True, help="result JSON file")
        p.add_argument("--model", help="model name for requests (default: the server's first model)")
        p.add_argument("--policy", help="label of the run in the result (default: detected from the server)")
        p.add_argument("--api-key", help="bearer token, for servers that want one")
        p.add_argument("--no-end-sessions", dest="end_sessions", action="store_false",
                       help="do not call POST /v1/sessions/{id}/end after a program's last turn")
        return p

    def run(self, args: argparse.Namespace, extra: list[str]) -> int:
        from continuum_eval.live.replay import ReplayError, ReplayOptions, replay_sync
        from continuum_eval.results.report import format_table

        programs = trace_programs(args)
        try:
            opts = ReplayOptions(base_url=args.base_url, model=args.model, jps=args.jps, seed=args.seed,
                                 max_context=args.max_context, token_scale=args.token_scale,
                                 tool_scale=args.tool_scale, hints=args.hints, end_sessions=args.end_sessions,
                                 request_timeout_s=args.request_timeout, vocab_lo=args.vocab_range[0],
                                 vocab_hi=args.vocab_range[1], progress=args.progress, policy=args.policy,
                                 api_key=args.api_key, meta={"trace": str(args.trace)})
            result = replay_sync(programs, opts)
        except ReplayError as exc:
            raise VerbError(str(exc)) from None
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(format_table([result]))
        print(f"result: {out}")
        if result["failed"]:
            log.warning(f"{result['failed']} of {result['programs']} programs failed; first: {result['errors'][:1]}")
        return 0


class BenchVerb:
    """`continuum bench`: a trace against one server per policy (or the simulator), or real agents (``--agent``)."""

    name, passthrough = "bench", False

    def add_to(self, subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
        b = subparsers.add_parser("bench", help="A/B benchmark: same trace, same seed, one server per policy",
                                  description="Live: start `continuum serve MODEL --policy P` for each policy (same "
                                              "model, KV budget and flags), replay the trace at every rate, write "
                                              "results.json, report.md and plots. Sim: the same with the simulator.")
        _add_common(b, trace_required=False)
        b.add_argument("--mode", choices=("live", "sim"), default="live")
        b.add_argument("--policies", default="vllm,continuum",
                       help="comma list of presets (`continuum policies`), or PRESET/TTL_MODE (e.g. "
                            "continuum/preserve)")
        b.add_argument("--jps", type=_jps_list, help="rates, e.g. 0.5 or 0.2,0.5,1 (trace benches)")
        b.add_argument("--out", required=True, help="output folder")
        b.add_argument("--model", default=None, help="model to serve (default: the embedded smollm2-135m)")
        b.add_argument("--block-size", type=positive_int, default=32, help="KV block size (default 32)")
        b.add_argument("--num-gpu-blocks", type=positive_int,
                       help="KV pool size in blocks (--num-gpu-blocks-override), the memory agents compete for")
        b.add_argument("--max-model-len", type=positive_int, help="the servers' max model length")
        b.add_argument("--server-args", default="",
                       help="more vLLM flags for every server, one quoted string: --server-args='--foo 1'")
        b.add_argument("--continuum-args", default="",
                       help="flags for Continuum servers only, e.g. --continuum-args='--pin-cap 0.6'")
        b.add_argument("--startup-timeout", type=positive_float, default=900.0,
                       help="seconds to wait for a server to be healthy (default 900)")
        b.add_argument("--restart-each-run", action="store_true",
                       help="a fresh server for every rate (default: one server per policy, prefix cache reset)")
        b.add_argument("--profile", default=None, help="sim mode: cost-model profile name")
        b.add_argument("--router", default="", metavar="SETUPS",
                       help="live: run each policy as --replicas replicas behind vllm-router, once per set-up: hash "
                            "(consistent hash on X-Session-ID), program (plus the router's program scheduling); "
                            "e.g. hash,program")
        b.add_argument("--replicas", type=positive_int, default=2,
                       help="live --router: replicas per cluster (default 2)")
        b.add_argument("--router-config", default=None,
                       help="live --router program: JSON for vllm-router's --program-scheduling-config-json")
        b.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNG plots")
        add_host_tier_flags(b)
        add_policy_flags(b)
        add_agent_arguments(b)
        return b

    def run(self, args: argparse.Namespace, extra: list[str]) -> int:
        if args.agent:
            from continuum_eval.agents_bench.cli import run_agent_bench_args

            try:
                return run_agent_bench_args(args)
            except ValueError as exc:
                raise VerbError(str(exc)) from None
        from continuum_eval.live.bench import run_bench
        from continuum_eval.live.settings import BenchConfig, BenchError

        if not args.trace:
            raise VerbError("--trace: a trace is required (or run real agents with --agent)")
        if not args.jps:
            raise VerbError("--jps: give at least one rate for a trace bench")
        programs = trace_programs(args)
        policies, overrides = policies_and_overrides(args.policies, "--policies", args)
        try:
            cfg = BenchConfig(
                mode=args.mode, policies=policies, jps=args.jps, out_dir=Path(args.out), model=args.model,
                seed=args.seed, max_context=args.max_context, token_scale=args.token_scale,
                tool_scale=args.tool_scale, hints=args.hints, request_timeout_s=args.request_timeout,
                vocab=args.vocab_range, block_size=args.block_size, num_gpu_blocks=args.num_gpu_blocks,
                max_model_len=args.max_model_len, server_args=args.server_args,
                continuum_args=args.continuum_args, overrides=overrides, startup_timeout_s=args.startup_timeout,
                restart_each_run=args.restart_each_run, profile=args.profile, progress=args.progress,
                plots=args.plots, trace=str(args.trace),
                routers=[r.strip() for r in args.router.split(",") if r.strip()], replicas=args.replicas,
                router_config=args.router_config, cpu_kv_gib=args.cpu_kv_gib, cpu_eviction=args.cpu_eviction)
            run_bench(programs, cfg)
        except BenchError as exc:
            raise VerbError(str(exc)) from None
        return 0


def main(argv: list[str] | None = None) -> int:
    return verbs.run(verbs.build_parser([ReplayVerb(), BenchVerb()]), argv)


if __name__ == "__main__":
    sys.exit(main())
