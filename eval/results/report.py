"""Reports of a comparison: a markdown table, ratios against the baseline, and PNG plots.

Input is a list of result dicts (``results.json`` of `continuum bench`, or several ``replay`` outputs).
Rows are policy × JPS; the baseline for ratios is the ``vllm`` policy. Plots (matplotlib, Agg backend):

- ``jct_vs_jps.png``: mean JCT (and p95, dashed) against load, one line per policy (bars of mean and p95
  per policy when there is a single load level);
- ``jct_cdf.png``: CDF of per-program JCT, one line per policy, one panel per JPS.

``python -m continuum_eval.results.report results.json [more.json ...] --out DIR`` rebuilds the report from saved
results.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from continuum.serve.verbs import setup_logging

__all__ = ["format_table", "ratios", "format_ratios", "plot_jct_vs_jps", "plot_jct_cdf", "write_report",
           "load_results", "pyplot", "save_figure", "percent", "BASELINE"]

BASELINE = "vllm"


def _key(r: dict[str, Any]) -> tuple:
    return (r.get("jps") if r.get("jps") is not None else -1.0, str(r.get("policy")))


def _policies(results: Sequence[dict[str, Any]]) -> list[str]:
    seen: list[str] = []
    for r in results:
        if r.get("policy") not in seen:
            seen.append(r.get("policy"))
    # The baseline first, then in order of appearance.
    return sorted(seen, key=lambda p: (p != BASELINE, seen.index(p)))


def _jps(r: dict[str, Any]) -> str:
    return "trace" if r.get("jps") is None else f"{r['jps']:g}"


def percent(rate: float | None) -> str:
    """A rate as a percentage; "n/a" when it is unknown (the server did not report it)."""
    return "n/a" if rate is None else f"{100 * rate:.1f}%"


def format_table(results: Sequence[dict[str, Any]]) -> str:
    """Markdown table, one row per (JPS, policy)."""
    head = ("| policy | mode | JPS | done/total | mean JCT (s) | p95 JCT (s) | mean TTFT (s) | prefix hit rate "
            "| pins created | pin hits | peak pinned blocks |")
    lines = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    order = _policies(results)
    for r in sorted(results, key=lambda r: (_key(r)[0], order.index(r.get("policy")))):
        pins = r.get("pins") or {}
        lines.append(
            f"| {r.get('policy')} | {r.get('mode', '')} | {_jps(r)} | {r.get('completed', 0)}/{r.get('programs', 0)} "
            f"| {r['jct_s']['mean']:.2f} | {r['jct_s']['p95']:.2f} | {r['ttft_s']['mean']:.3f} "
            f"| {percent(r.get('prefix_hit_rate'))} | {pins.get('created', 0)} | {pins.get('hit', 0)} "
            f"| {pins.get('peak_blocks', 0)} |")
    return "\n".join(lines)


def ratios(results: Sequence[dict[str, Any]], baseline: str = BASELINE) -> list[dict[str, Any]]:
    """For each non-baseline result with a baseline at the same JPS: policy / baseline of the key metrics."""
    base = {r.get("jps"): r for r in results if r.get("policy") == baseline}
    out = []
    for r in sorted(results, key=_key):
        b = base.get(r.get("jps"))
        if r.get("policy") == baseline or b is None:
            continue

        def div(a: float, c: float) -> float | None:
            return a / c if c else None

        out.append({"policy": r["policy"], "baseline": baseline, "jps": r.get("jps"),
                    "mean_jct": div(r["jct_s"]["mean"], b["jct_s"]["mean"]),
                    "p95_jct": div(r["jct_s"]["p95"], b["jct_s"]["p95"]),
                    "mean_ttft": div(r["ttft_s"]["mean"], b["ttft_s"]["mean"]),
                    "both_complete": r.get("failed", 0) == 0 and b.get("failed", 0) == 0})
    return out


def format_ratios(results: Sequence[dict[str, Any]], baseline: str = BASELINE) -> str:
    rows = ratios(results, baseline)
    if not rows:
        return ""

    def f(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    lines = ["| ratio | JPS | mean JCT | p95 JCT | mean TTFT |", "|---|---|---|---|---|"]
    for r in rows:
        note = "" if r["both_complete"] else " (failed programs)"
        lines.append(f"| {r['policy']} / {baseline}{note} | {_jps(r)} | {f(r['mean_jct'])} | {f(r['p95_jct'])} "
                     f"| {f(r['mean_ttft'])} |")
    return "\n".join(lines)


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (files, no display). Imported on first use: matplotlib is the eval
    extra's, and reports without plots do not need it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path) -> Path:
    """Lay out, write and close a figure; returns its path."""
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    pyplot().close(fig)
    return path


def plot_jct_vs_jps(results: Sequence[dict[str, Any]], path: str | Path) -> Path:
    plt = pyplot()
    rates = sorted({r["jps"] for r in results if r.get("jps") is not None})
    if len(rates) <= 1:
        # One load level: a line plot would be a lone dot per policy; bars read better.
        fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
        _jct_bars(ax, results, rates[0] if rates else None)
        return save_figure(fig, path)
    # Mean and p95 side by side, one line per policy; many policies need more colours and the legend outside.
    fig, axes = plt.subplots(1, 2, figsize=(12.8, 4.6), dpi=120, sharey=True)
    policies = _policies(results)
    cmap = plt.get_cmap("tab20" if len(policies) > 10 else "tab10")
    for i, pol in enumerate(policies):
        rows = sorted((r for r in results if r.get("policy") == pol and r.get("jps") is not None),
                      key=lambda r: r["jps"])
        xs = [r["jps"] for r in rows]
        for ax, stat, marker in ((axes[0], "mean", "o"), (axes[1], "p95", "x")):
            ax.plot(xs, [r["jct_s"][stat] for r in rows], marker=marker, color=cmap(i % cmap.N), label=pol)
    values = [r["jct_s"][k] for r in results for k in ("mean", "p95") if r["jct_s"].get(k)]
    for ax, stat in ((axes[0], "mean"), (axes[1], "p95")):
        ax.set_xlabel("load (programs per second, JPS)")
        ax.set_title(f"{stat} JCT vs load")
        ax.grid(True, alpha=0.3)
        if values and max(values) > 10 * min(values):
            ax.set_yscale("log")
    axes[0].set_ylabel("job completion time (s)")
    axes[1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    return save_figure(fig, path)


def _jct_bars(ax, results: Sequence[dict[str, Any]], rate: float | None) -> None:
    policies = _policies(results)
    width = 0.38
    for i, pol in enumerate(policies):
        r = next((r for r in results if r.get("policy") == pol), None)
        if r is None:
            continue
        for j, (stat, hatch) in enumerate((("mean", None), ("p95", "//"))):
            v = r["jct_s"][stat]
            x = i + (j - 0.5) * width
            ax.bar(x, v, width=width * 0.95, color=f"C{i}", alpha=1.0 if j == 0 else 0.6, hatch=hatch,
                   edgecolor="black", linewidth=0.5)
            ax.annotate(f"{v:.1f}s", (x, v), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(policies)), [f"{p}\n(mean | p95)" for p in policies])
    ax.set_ylabel("job completion time (s)")
    ax.set_title(f"JCT by policy, JPS {'trace' if rate is None else f'{rate:g}'}")
    ax.set_ylim(0, 1.15 * max((r["jct_s"]["p95"] for r in results), default=1.0) or 1.0)
    ax.grid(True, axis="y", alpha=0.3)


def plot_jct_cdf(results: Sequence[dict[str, Any]], path: str | Path) -> Path:
    plt = pyplot()
    rates = sorted({r.get("jps") for r in results}, key=lambda x: -1 if x is None else x)
    n = len(rates)
    cols = min(n, 3)
    rows_n = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(5.2 * cols, 3.9 * rows_n), dpi=120, squeeze=False)
    policies = _policies(results)
    for ax, rate in zip(axes.flat, rates):
        for i, pol in enumerate(policies):
            for r in results:
                if r.get("policy") != pol or r.get("jps") != rate:
                    continue
                jcts = sorted(p["jct_s"] for p in r.get("per_program") or [] if p.get("jct_s") is not None)
                if not jcts:
                    continue
                ys = [0.0] + [(k + 1) / len(jcts) for k in range(len(jcts))]
                ax.step([jcts[0]] + jcts, ys, where="post", color=f"C{i}",
                        label=f"{pol} (mean {r['jct_s']['mean']:.1f}s)")
        ax.set_title(f"JCT CDF, JPS {'trace' if rate is None else f'{rate:g}'}")
        ax.set_xlabel("job completion time (s)")
        ax.set_ylabel("fraction of programs")
        ax.set_ylim(0, 1.02)
        ax.set_xlim(left=0)
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(loc="upper left", fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    return save_figure(fig, path)


def write_report(results: Sequence[dict[str, Any]], out_dir: str | Path, *, title: str = "Continuum vs vLLM",
                 notes: Sequence[str] = (), plots: bool = True) -> dict[str, Path]:
    """Write report.md (and the PNGs) into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    if plots:
        paths["jct_vs_jps"] = plot_jct_vs_jps(results, out / "jct_vs_jps.png")
        paths["jct_cdf"] = plot_jct_cdf(results, out / "jct_cdf.png")
    parts = [f"# {title}", "", format_table(results), ""]
    if rt := format_ratios(results):
        parts += ["Ratios against plain vLLM at the same load (below 1: better than vLLM):", "", rt, ""]
    failed = [r for r in results if r.get("failed")]
    for r in failed:
        parts.append(f"- {r['policy']} at JPS {_jps(r)}: {r['failed']} failed programs; "
                     f"first error: {(r.get('errors') or ['?'])[0]}")
    if failed:
        parts.append("")
    if notes:
        parts += [f"- {n}" for n in notes] + [""]
    for name, p in paths.items():
        parts += [f"![{name}]({p.name})", ""]
    paths["report"] = out / "report.md"
    paths["report"].write_text("\n".join(parts))
    return paths


def load_results(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for p in paths:
        data = json.loads(Path(p).read_text())
        results.extend(data if isinstance(data, list) else [data])
    return results


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    ap = argparse.ArgumentParser(prog="python -m continuum_eval.results.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", help="results.json of bench, or replay result files")
    ap.add_argument("--out", required=True, help="output folder")
    args = ap.parse_args(argv)
    try:
        results = load_results(args.results)
    except (OSError, ValueError) as exc:
        print(f"continuum_eval.results.report: {exc}", file=sys.stderr)
        return 2
    paths = write_report(results, args.out)
    print(format_table(results))
    if rt := format_ratios(results):
        print()
        print(rt)
    print(f"report: {paths['report']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
