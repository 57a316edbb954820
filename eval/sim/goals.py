"""The host-tier goals table: the default against vLLM with its host KV tier, the best oracle and the bound.

    python -m continuum_eval.sim.goals runs/tier/results.json runs/plain/results.json [--out goals.md]

reads sweep results (`continuum_eval.sim.sweep`, any number of files: with and without ``--cpu-kv-gib``, with
``--oracle``) of one trace and profile, and prints per load: plain vLLM, vLLM with its host tier (the baseline),
the default with the tier, the best oracle (with the tier where it was searched so) and the lower bound (mean /
p95 JCT), then the ratios the goals are
about. A row's name gains ``+tier`` when its run had a host tier. The *knee* is the first load where the
baseline's mean JCT reaches ``KNEE_FACTOR`` times its value at the lowest load (no pressure). The goals:

- from the knee up, the default's mean and p95 JCT at least ``GOAL_RATIO`` times below the baseline's;
- at every load, the default at most ``SLACK`` worse than the baseline, and within ``ORACLE_RATIO`` of the best
  oracle where one was searched.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from continuum_eval.results.report import pyplot

KNEE_FACTOR = 3.0
GOAL_RATIO = 1.5
SLACK = 0.02
ORACLE_RATIO = 1.10
BASELINE, DEFAULT, ORACLE, PLAIN = "vllm+tier", "continuum+tier", "best-oracle", "vllm"


def label(result: dict[str, Any]) -> str:
    """The row a result fills: its policy, ``+tier`` when it ran with a host KV tier."""
    return result["policy"] + ("+tier" if result.get("host_tier") else "")


def by_load(results: Sequence[dict[str, Any]]) -> dict[float, dict[str, dict[str, Any]]]:
    """load -> row label -> result (a later file's run of the same row and load wins)."""
    out: dict[float, dict[str, dict[str, Any]]] = {}
    for r in results:
        out.setdefault(float(r["jps"]), {})[label(r)] = r
    return out


def knee(rows: dict[float, dict[str, dict[str, Any]]]) -> float | None:
    """The first load where the baseline's mean JCT reaches KNEE_FACTOR x its value at the lowest load."""
    loads = sorted(j for j in rows if BASELINE in rows[j])
    if not loads:
        return None
    unloaded = rows[loads[0]][BASELINE]["jct_s"]["mean"]
    return next((j for j in loads if rows[j][BASELINE]["jct_s"]["mean"] >= KNEE_FACTOR * unloaded), None)


def cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return "-"
    limit = f" (N={r['oracle']['limit'] or 'none'})" if r.get("oracle") else ""
    return f"{r['jct_s']['mean']:.1f} / {r['jct_s']['p95']:.1f}{limit}"


def ratio(a: dict[str, Any] | None, b: dict[str, Any] | None, stat: str) -> float | None:
    """a's JCT statistic over b's (None when either is missing)."""
    return None if a is None or b is None else a["jct_s"][stat] / b["jct_s"][stat]


def fmt(x: float | None, goal: bool | None = None) -> str:
    mark = "" if goal is None else " ✓" if goal else " ✗"
    return "-" if x is None else f"{x:.2f}x{mark}"


def table(results: Sequence[dict[str, Any]]) -> str:
    """The goals table (markdown) and the knee."""
    rows = by_load(results)
    k = knee(rows)
    head = ("| JPS | vllm | vllm + tier | continuum + tier | best oracle | bound | vllm+tier / continuum, mean | "
            "p95 | continuum / oracle |")
    lines = [head, "|" + "---|" * 9]
    for j in sorted(rows):
        row = rows[j]
        base, ours = row.get(BASELINE), row.get(DEFAULT)
        best = row.get(ORACLE + "+tier") or row.get(ORACLE)  # searched with the tier, else without
        bound = next((r["bound"]["mean_jct_s"] for r in row.values() if r.get("bound")), None)
        at_knee = k is not None and j >= k
        mean, p95 = ratio(base, ours, "mean"), ratio(base, ours, "p95")
        vs_oracle = ratio(ours, best, "mean")
        lines.append(
            f"| {j:g}{' (knee)' if j == k else ''} | {cell(row.get(PLAIN))} | {cell(base)} | {cell(ours)} | "
            f"{cell(best)} | {'-' if bound is None else f'{bound:.1f}'} | "
            f"{fmt(mean, None if mean is None else mean >= (GOAL_RATIO if at_knee else 1 - SLACK))} | "
            f"{fmt(p95, None if p95 is None or not at_knee else p95 >= GOAL_RATIO)} | "
            f"{fmt(vs_oracle, None if vs_oracle is None else vs_oracle <= ORACLE_RATIO)} |")
    note = (f"knee: {k:g} JPS (the baseline's mean JCT first reaches {KNEE_FACTOR:g}x its lowest-load value)"
            if k is not None else "knee: not reached")
    return "\n".join(lines) + "\n\n" + note


def plot(results: Sequence[dict[str, Any]], path: Path) -> None:
    """Mean JCT against load: plain vLLM, the baseline, the default, the best oracle and the bound."""
    plt = pyplot()
    rows = by_load(results)
    loads = sorted(rows)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in (PLAIN, BASELINE, DEFAULT, ORACLE + "+tier", ORACLE):
        pts = [(j, rows[j][name]["jct_s"]["mean"]) for j in loads if name in rows[j]]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=name)
    bound = [(j, r["bound"]["mean_jct_s"]) for j in loads for r in list(rows[j].values())[:1] if r.get("bound")]
    if bound:
        ax.plot(*zip(*bound), linestyle="--", color="gray", label="lower bound")
    ax.set(xlabel="load (programs/s)", ylabel="mean JCT (s)", yscale="log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m continuum_eval.sim.goals", description=__doc__.split("\n")[0])
    p.add_argument("results", nargs="+", help="results.json files of sweeps (one trace and profile)")
    p.add_argument("--out", help="also write the table to this markdown file")
    p.add_argument("--png", help="also plot mean JCT against load to this PNG")
    a = p.parse_args(argv)
    results: list[dict[str, Any]] = []
    for path in a.results:
        try:
            results += json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            p.error(f"{path}: {exc}")
    text = table(results)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    if a.png:
        plot(results, Path(a.png))
    return 0


if __name__ == "__main__":
    sys.exit(main())
