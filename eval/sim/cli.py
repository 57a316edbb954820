"""The `continuum sim` and `continuum profile` verbs.

`SimVerb` and `ProfileVerb` are registered in the project's `continuum.verbs` entry points;
``python -m continuum_eval.sim.cli sim|profile ...`` runs them without the entry point. Bad input raises
`VerbError`: one line on stderr, exit status 2.

    continuum sim --trace FILE --policy P --profile NAME --jps X --out RESULT.json
    continuum sim --trace FILE --replicas 4 --router session --jps 4 --out RESULT.json
    continuum sim --trace FILE --dp 4 --lockstep --balance any-full --max-num-seqs 64 --jps 4 --out RESULT.json
    continuum sim --trace FILE --policy vllm,continuum --cpu-kv-gib 128 --jps 2 --out RESULT.json
    continuum sim --profile list
    continuum profile [--model tiny] [--out eval/sim/fitted/cpu.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from continuum.policy.flags import add_policy_flags
from continuum.serve import verbs
from continuum.serve.argtypes import non_negative_float, positive_float, positive_int
from continuum.serve.verbs import VerbError
from continuum_eval.results.report import format_table
from continuum_eval.verb_args import add_host_tier_flags, policies_and_overrides, trace_programs
from continuum_workloads import Program, shape_programs

__all__ = ["SimVerb", "ProfileVerb", "main"]

log = logging.getLogger(__name__)


def _csv(text: str) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise argparse.ArgumentTypeError("give at least one value")
    return items


def _load_programs(args: argparse.Namespace) -> list[Program]:
    return shape_programs(trace_programs(args), token_scale=args.token_scale, tool_scale=args.tool_scale,
                          max_context=args.max_context)


def _profile(args: argparse.Namespace):
    from continuum_eval.sim.cost.profiles import get_profile

    try:
        prof = get_profile(args.profile)
    except (ValueError, FileNotFoundError, KeyError, json.JSONDecodeError) as exc:
        raise VerbError(f"--profile: {exc}") from None
    for flag, attr in (("num_blocks", "num_blocks"), ("block_size", "block_size"), ("max_model_len", "max_model_len"),
                       ("max_num_seqs", "max_num_seqs")):
        if getattr(args, flag, None):
            setattr(prof, attr, getattr(args, flag))
    return prof


def _check_scaleout(args: argparse.Namespace) -> None:
    if args.replicas > 1 and args.dp > 1:
        raise VerbError("--replicas and --dp: simulate replicas or data-parallel ranks, not both")
    if args.lockstep and args.dp < 2:
        raise VerbError("--lockstep needs --dp 2 or more")
    if args.router != "session" and args.replicas < 2:
        raise VerbError("--router needs --replicas 2 or more")


class SimVerb:
    """`continuum sim`: a trace simulated under each policy and rate, written as a result JSON."""

    name, passthrough = "sim", False

    def add_to(self, subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
        p = subparsers.add_parser(
            "sim", help="simulate a trace: vLLM's real scheduler and KV cache on a virtual clock + a GPU cost model",
            description="Runs the scheduler classes `continuum serve` loads, with vLLM's real KV cache manager, "
                        "replacing only the model's execution by a cost model. Writes the result JSON.")
        p.add_argument("--trace", help="trace JSONL (see workloads/README.md)")
        p.add_argument("--policy", default="continuum",
                       help="policy presets (`continuum policies`; or PRESET/TTL_MODE); a comma list runs each and "
                            "writes a list (default continuum)")
        p.add_argument("--profile", default="h100-llama-3.1-8b",
                       help="cost profile name, a fitted profile JSON, or 'list' to show them "
                            "(default h100-llama-3.1-8b)")
        p.add_argument("--jps", type=_csv,
                       help="program arrival rate(s), Poisson, seeded; default: the trace's arrival_s")
        p.add_argument("--seed", type=int, default=0, help="seed of arrivals and synthetic token ids (default 0)")
        p.add_argument("--out", help="result JSON file")
        p.add_argument("--limit", type=positive_int, help="simulate only the first N programs of the trace")
        p.add_argument("--max-context", type=positive_int,
                       help="fit each program into N tokens of context (as `continuum replay --max-context`)")
        p.add_argument("--token-scale", type=positive_float, default=1.0,
                       help="multiply every turn's token counts by F (as `continuum replay --token-scale`)")
        p.add_argument("--tool-scale", type=non_negative_float, default=1.0, help="multiply every tool time by F")
        p.add_argument("--num-blocks", type=positive_int, help="override the profile's KV pool size (blocks)")
        p.add_argument("--block-size", type=positive_int, help="override the profile's KV block size")
        p.add_argument("--max-model-len", type=positive_int, help="override the profile's max model length")
        p.add_argument("--max-num-seqs", type=positive_int,
                       help="override the profile's max running requests per engine")
        g = p.add_argument_group("scale-out (eval/sim/engine/loop.py, eval/sim/engine/routing.py)")
        g.add_argument("--replicas", type=positive_int, default=1, help="engines behind a router (default 1)")
        g.add_argument("--router", choices=("round-robin", "session", "session-load"), default="session",
                       help="how --replicas route turns: round-robin, session (hash of the program id), session-load "
                            "(session, spilling to the least loaded engine when overloaded); default session")
        g.add_argument("--dp", type=positive_int, default=1,
                       help="data-parallel ranks; a program is kept on one rank (spilling when it is overloaded)")
        g.add_argument("--lockstep", action="store_true",
                       help="with --dp: ranks step together and a step lasts as long as the slowest rank's batch "
                            "(mixture-of-experts data parallelism); pair with --balance any-full")
        add_host_tier_flags(p)
        add_policy_flags(p)
        p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
        return p

    def run(self, args: argparse.Namespace, extra: list[str]) -> int:
        if args.profile == "list":
            from continuum_eval.sim.cost.profiles import format_listing, listing

            print(format_listing(listing()))
            return 0
        if not args.out:
            raise VerbError("--out is required")
        policies, overrides = policies_and_overrides(args.policy, "--policy", args)
        try:
            rates = [positive_float(x) for x in args.jps] if args.jps else [None]
        except argparse.ArgumentTypeError as exc:
            raise VerbError(f"--jps: {exc}") from None
        _check_scaleout(args)
        prof = _profile(args)
        programs = _load_programs(args)
        from continuum_eval.sim.run import host_tier_line, simulate_result  # vLLM: loaded to simulate, not for --help

        results = []
        for pol in policies:
            for jps in rates:
                t0 = time.perf_counter()
                try:
                    r = simulate_result(programs, pol, prof, jps, args.seed, progress=args.progress,
                                        policy_overrides=overrides or None,
                                        meta={"trace": str(args.trace), "token_scale": args.token_scale,
                                              "tool_scale": args.tool_scale, "max_context": args.max_context},
                                        replicas=args.replicas, router=args.router, dp=args.dp, lockstep=args.lockstep,
                                        cpu_kv_gib=args.cpu_kv_gib, cpu_eviction=args.cpu_eviction)
                except ValueError as exc:
                    raise VerbError(str(exc)) from None
                results.append(r)
                where = f" x{args.replicas} {args.router}" if args.replicas > 1 else \
                    f" dp{args.dp}{' lockstep' if args.lockstep else ''}" if args.dp > 1 else ""
                log.info(f"sim {pol}{where} jps={jps}: {r['completed']}/{r['programs']} programs, mean JCT "
                         f"{r['jct_s']['mean']:.2f} s, p95 {r['jct_s']['p95']:.2f} s, "
                         f"slowdown {r['slowdown']['mean']:.2f}, prefix hits {100 * r['prefix_hit_rate']:.1f}%, "
                         f"mean JCT bound {r['bound']['mean_jct_s']:.2f} s"
                         f"{host_tier_line(r)} ({time.perf_counter() - t0:.1f} s wall)")
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results[0] if len(results) == 1 else results, indent=2) + "\n")
        print(format_table(results))
        print(f"result: {out}")
        return 0


class ProfileVerb:
    """`continuum profile`: the CPU engine measured and the simulator's ``cpu`` profile fitted to it."""

    name, passthrough = "profile", False

    def add_to(self, subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
        q = subparsers.add_parser(
            "profile", help="measure the live CPU engine's step times and fit the simulator's `cpu` profile",
            description="Drives `continuum serve` on an embedded model (or the in-process engine) with prefill and "
                        "decode batches, fits the step-time model and the client overhead, writes them as JSON.")
        q.add_argument("--model", default="tiny", help="embedded model or path (default tiny)")
        q.add_argument("--out", default=None, help="profile JSON (default eval/sim/fitted/cpu.json)")
        q.add_argument("--block-size", type=positive_int, default=32, help="KV block size of the engine (default 32)")
        q.add_argument("--num-blocks", type=positive_int, default=None,
                       help="KV pool the simulated engine gets (default: what the live engine allocates)")
        q.add_argument("--max-model-len", type=positive_int, default=8192)
        q.add_argument("--max-num-seqs", type=positive_int, default=128)
        q.add_argument("--max-num-batched-tokens", type=positive_int, default=2048)
        q.add_argument("--repeats", type=positive_int, default=3, help="repetitions of the grid (default 3)")
        q.add_argument("--quick", action="store_true", help="a small grid (for tests)")
        q.add_argument("--no-client", dest="client", action="store_false",
                       help="engine method: skip measuring the HTTP client overhead through `continuum serve`")
        q.add_argument("--method", choices=("server", "engine"), default="server",
                       help="server: drive `continuum serve` like the replay does (default); engine: time the "
                            "in-process engine's steps exactly")
        return q

    def run(self, args: argparse.Namespace, extra: list[str]) -> int:
        from continuum_eval.sim.fit.profile_cpu import ProfileError, profile_cpu

        try:
            path = profile_cpu(model=args.model, out=args.out, block_size=args.block_size, num_blocks=args.num_blocks,
                               max_model_len=args.max_model_len, max_num_seqs=args.max_num_seqs,
                               max_num_batched_tokens=args.max_num_batched_tokens, repeats=args.repeats,
                               quick=args.quick, client=args.client, method=args.method)
        except ProfileError as exc:
            raise VerbError(str(exc)) from None
        print(f"profile: {path}")
        return 0


def main(argv: list[str] | None = None) -> int:
    return verbs.run(verbs.build_parser([SimVerb(), ProfileVerb()]), argv)


if __name__ == "__main__":
    sys.exit(main())
