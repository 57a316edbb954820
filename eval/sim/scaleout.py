"""The scale-out report: replicas at proportional load under each router, and balance scheduling in lockstep.

    python -m continuum_eval.sim.scaleout replicas --trace swe.jsonl --replicas 1,4,16 --per-replica 200 --jps 1 \\
        --routers round-robin,session,session-load --out runs/scaleout
    python -m continuum_eval.sim.scaleout balance --trace swe.jsonl --dp 4 --max-num-seqs 32 --programs 400 --jps 8 \\
        --out runs/balance

``replicas``: N replicas serve the first N x ``per-replica`` programs of the trace at N x ``jps`` (each replica sees the
load one replica sees at ``jps``); the table compares mean / p95 JCT and prefix hit rate with one replica serving the
same programs at ``jps`` (same programs, so the comparison is not a sample of another set), and the simulator's own
wall seconds per simulated program, which must stay flat as N grows for the simulator to keep up with the clusters
it models. ``balance``: ``dp`` ranks in
lockstep, balance scheduling off and on (`continuum.sched.balance`); the table compares output throughput, time per
output token, TTFT and JCT. Both write ``results.json``, ``report.md`` and PNG plots.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from continuum.serve.argtypes import positive_float, positive_int
from continuum.serve.verbs import setup_logging
from continuum_eval.results.report import pyplot, save_figure
from continuum_eval.sim.cost.profiles import get_profile
from continuum_eval.sim.run import DEFAULT_PROFILE, simulate_result
from continuum_workloads import load_programs

log = logging.getLogger(__name__)


def _ints(text: str) -> list[int]:
    return [positive_int(x) for x in text.split(",") if x.strip()]


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _row(r: dict, **extra: Any) -> dict:
    return {"mean_jct_s": r["jct_s"]["mean"], "p95_jct_s": r["jct_s"]["p95"], "hit_rate": r["prefix_hit_rate"],
            "ttft_s": r["ttft_s"]["mean"], "tpot_s": r.get("tpot_s", {}).get("mean", 0.0),
            "output_tok_s": r["output_tok_s"], "completed": r["completed"], "programs": r["programs"],
            "moves": (r.get("scaleout") or {}).get("moves", 0), **extra}


def timed_replicas(progs: list, args: argparse.Namespace, k: int, router: str, group: int) -> dict:
    """One simulation of ``progs`` on ``k`` replicas, with the simulator's wall time around it: its seconds
    per simulated program are what must stay flat as the modelled cluster grows. The process's CPU time is kept
    too: on a shared machine it is the cost that other work does not inflate."""
    t0, c0 = time.perf_counter(), time.process_time()
    r = simulate_result(progs, args.policy, args.profile, args.jps * k, args.seed, progress=args.progress,
                        replicas=k, router="session" if router == "-" else router)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return _row(r, replicas=k, router=router, jps=args.jps * k, group=group, wall_s=wall, cpu_s=cpu,
                sim_s_per_program=wall / len(progs), cpu_s_per_program=cpu / len(progs))


def run_replicas(programs: list, args: argparse.Namespace) -> list[dict]:
    """Per replica count N: one replica serving the same N x per-replica programs at the base load (the
    baseline), then N replicas at N times the load under each router."""
    rows = []
    for n in args.replicas:
        progs = programs[: n * args.per_replica]
        if len(progs) < n * args.per_replica:
            raise SystemExit(f"--per-replica: the trace has {len(programs)} programs, {n} replicas need "
                             f"{n * args.per_replica}")
        for router in ["-"] + (args.routers if n > 1 else []):
            rows.append(timed_replicas(progs, args, 1 if router == "-" else n, router, n))
            r = rows[-1]
            log.info(f"[scaleout] {len(progs)} programs, {r['replicas']} x {router}: mean JCT "
                     f"{r['mean_jct_s']:.2f} s, hits {100 * r['hit_rate']:.1f}% ({r['wall_s']:.0f} s, "
                     f"{r['sim_s_per_program']:.3f} s, CPU {r['cpu_s_per_program']:.3f} s per program)")
    return rows


def replicas_table(rows: Sequence[dict]) -> str:
    head = ("| programs | replicas | router | JPS | done/total | mean JCT (s) | vs 1 replica | p95 JCT (s) "
            "| prefix hit rate | vs 1 replica (points) | turns moved | sim s / program | CPU s / program "
            "| wall (s) |")
    lines = [head, "|" + "---|" * 14]
    for r in rows:
        base = next(b for b in rows if b["group"] == r["group"] and b["router"] == "-")
        lines.append(f"| {r['programs']} | {r['replicas']} | {r['router']} | {r['jps']:g} "
                     f"| {r['completed']}/{r['programs']} | {r['mean_jct_s']:.2f} "
                     f"| {100 * (r['mean_jct_s'] / base['mean_jct_s'] - 1):+.1f}% | {r['p95_jct_s']:.2f} "
                     f"| {100 * r['hit_rate']:.1f}% | {100 * (r['hit_rate'] - base['hit_rate']):+.1f} "
                     f"| {r['moves']} | {r['sim_s_per_program']:.3f} | {r['cpu_s_per_program']:.3f} "
                     f"| {r['wall_s']:.0f} |")
    return "\n".join(lines)


def plot_replicas(rows: Sequence[dict], path: Path) -> Path:
    """Mean JCT and prefix hit rate of N replicas relative to one replica on the same programs, and the
    simulator's wall seconds per program of each run (flat in N: the simulator's cost is linear in the cluster)."""
    plt = pyplot()
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(14, 4), dpi=120)
    routers = [r for r in dict.fromkeys(x["router"] for x in rows) if r != "-"]
    base = {r["group"]: r for r in rows if r["router"] == "-"}
    for i, router in enumerate(routers):
        pts = sorted((r for r in rows if r["router"] == router), key=lambda r: r["replicas"])
        xs = [r["replicas"] for r in pts]
        a.plot(xs, [r["mean_jct_s"] / base[r["group"]]["mean_jct_s"] for r in pts], marker="o", color=f"C{i}",
               label=router)
        b.plot(xs, [100 * (r["hit_rate"] - base[r["group"]]["hit_rate"]) for r in pts], marker="o",
               color=f"C{i}", label=router)
        c.plot(xs, [r["cpu_s_per_program"] for r in pts], marker="o", color=f"C{i}", label=router)
    ones = sorted(base.values(), key=lambda r: r["group"])
    c.plot([r["group"] for r in ones], [r["cpu_s_per_program"] for r in ones], marker="s", color="grey", ls="--",
           label="1 replica, same programs")
    a.axhline(1.1, color="grey", ls=":", label="+10%")
    b.axhline(-3, color="grey", ls=":", label="-3 points")
    for ax, label in ((a, "mean JCT / one replica's"), (b, "prefix hit rate - one replica's (points)"),
                      (c, "simulator CPU s / program")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("replicas (load proportional)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    a.set_yscale("log")
    return save_figure(fig, path)


def run_balance(programs: list, args: argparse.Namespace) -> list[dict]:
    rows = []
    for balance in ("off", "any-full"):
        t0 = time.perf_counter()
        r = simulate_result(programs[: args.programs], args.policy, args.profile, args.jps, args.seed,
                            progress=args.progress, policy_overrides={"balance": balance}, dp=args.dp,
                            lockstep=True)
        held = sum(r["scaleout"].get("held_steps_per_rank", []))
        rows.append(_row(r, balance=balance, held_steps=held, steps=r["scaleout"]["lockstep_steps"],
                         skew_ms=r["scaleout"]["mean_skew_ms"], wall_s=time.perf_counter() - t0))
        log.info(f"[balance] {balance}: output {r['output_tok_s']:.0f} tok/s, TPOT "
                 f"{1e3 * rows[-1]['tpot_s']:.2f} ms")
    return rows


def balance_table(rows: Sequence[dict]) -> str:
    off = rows[0]

    def rel(r: dict, k: str) -> str:
        return "" if r is off else f" ({100 * (r[k] / off[k] - 1):+.1f}%)"

    head = ("| balance | output tok/s | mean TPOT (ms) | mean TTFT (s) | mean JCT (s) | held rank-steps "
            "| lockstep steps | mean skew (ms) |")
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        lines.append(f"| {r['balance']} | {r['output_tok_s']:.0f}{rel(r, 'output_tok_s')} "
                     f"| {1e3 * r['tpot_s']:.2f}{rel(r, 'tpot_s')} | {r['ttft_s']:.3f}{rel(r, 'ttft_s')} "
                     f"| {r['mean_jct_s']:.2f}{rel(r, 'mean_jct_s')} | {r['held_steps']} | {r['steps']} "
                     f"| {r['skew_ms']:.2f} |")
    return "\n".join(lines)


def plot_balance(rows: Sequence[dict], path: Path) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.4), dpi=120)
    names = [r["balance"] for r in rows]
    for ax, key, label, scale in zip(axes, ("output_tok_s", "tpot_s", "ttft_s"),
                                     ("output tokens / s", "TPOT (ms)", "TTFT (s)"), (1, 1e3, 1)):
        ax.bar(names, [scale * r[key] for r in rows], color=["C0", "C1"])
        ax.set_title(label)
        ax.grid(True, axis="y", alpha=0.3)
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m continuum_eval.sim.scaleout", description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=("replicas", "balance"))
    p.add_argument("--trace", required=True)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--policy", default="continuum")
    p.add_argument("--profile", default=DEFAULT_PROFILE)
    p.add_argument("--jps", type=positive_float, default=1.0, help="replicas: per replica; balance: in total")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--replicas", type=_ints, default=[1, 4, 16])
    p.add_argument("--routers", type=_names, default=["round-robin", "session", "session-load"])
    p.add_argument("--per-replica", type=positive_int, default=200, help="programs per replica")
    p.add_argument("--dp", type=positive_int, default=4)
    p.add_argument("--programs", type=positive_int, default=400, help="balance: programs in total")
    p.add_argument("--max-num-seqs", type=positive_int, help="balance: the profile's running requests per rank")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    args = p.parse_args(argv)
    setup_logging()
    args.profile = get_profile(args.profile)
    if args.max_num_seqs:
        args.profile.max_num_seqs = args.max_num_seqs
    programs = load_programs(args.trace)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.what == "replicas":
        rows = run_replicas(programs, args)
        table, plot = replicas_table(rows), plot_replicas(rows, out / "replicas.png")
    else:
        rows = run_balance(programs, args)
        table, plot = balance_table(rows), plot_balance(rows, out / "balance.png")
    wall = (f"Simulator wall time: {sum(r['wall_s'] for r in rows):.0f} s in the simulations, "
            f"{time.perf_counter() - t0:.0f} s in all.")
    (out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    cmd = "python -m continuum_eval.sim.scaleout " + " ".join(argv if argv is not None else sys.argv[1:])
    (out / "report.md").write_text(f"# Scale-out: {args.what} ({args.profile.name}, {args.policy})\n\n`{cmd}`\n\n"
                                   f"{table}\n\n{wall}\n\n![]({plot.name})\n")
    print(table)
    print(wall)
    print(f"report: {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
