"""Benchmark (not a test): how well the remaining-work predictor ranks programs, on a held-out trace.

The predictor (`kvttl.ProgramWork`) learns from the first ``--train`` programs of the trace as the scheduler
would (each turn's latency and context growth, each gap between turns, each program's turn count), then, for
every later program after each of its turns, predicts the remaining work. We report Kendall's tau-b between
predicted and true remaining work: over all (program, turns done) pairs, and among programs that have done the
same number of turns (k = 0 is the admission decision at the door, where only the population is known). The
true remaining work is the remaining tool time plus ``--turn-latency`` seconds per remaining turn.

    python -m continuum_eval.probes.rank_quality --trace swe.jsonl [--train 250] [--turn-latency 1.0]
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

import numpy as np

from continuum.serve.verbs import setup_logging
from continuum_workloads import Program, read_trace
from kvttl import ProgramWork, Progress


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties in either variable accounted for); nan when a side is constant."""
    a, b = np.asarray(x, float), np.asarray(y, float)
    i, j = np.triu_indices(len(a), k=1)
    dx, dy = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
    concordant_minus_discordant = float(np.sum(dx * dy))
    nx, ny = float(np.sum(dx != 0)), float(np.sum(dy != 0))
    return concordant_minus_discordant / np.sqrt(nx * ny) if nx and ny else float("nan")


def train(programs: Sequence[Program], latency_s: float) -> ProgramWork:
    work = ProgramWork()
    for p in programs:
        for k, turn in enumerate(p.turns):
            growth = turn.new_input_tokens + turn.output_tokens if k > 0 else None
            work.observe_turn(latency_s, growth)
            if k + 1 < len(p.turns):
                work.observe_gap(latency_s + turn.tool_s)
        work.remaining.record_program(len(p.turns))
    return work


def pairs(work: ProgramWork, programs: Sequence[Program], latency_s: float) -> list[tuple[int, float, float]]:
    """(turns done, predicted, true remaining seconds) after each turn of each program, and at its arrival."""
    out = []
    for p in programs:
        progress = Progress()
        for k in range(len(p.turns)):
            true = sum(t.tool_s for t in p.turns[k:]) + (len(p.turns) - k) * latency_s
            out.append((k, work.predict(progress).seconds, true))
            turn = p.turns[k]
            progress.turns += 1
            progress.seconds += latency_s + turn.tool_s if k + 1 < len(p.turns) else 0.0
            progress.growth_tokens += turn.new_input_tokens + turn.output_tokens if k > 0 else 0
    return out


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", required=True)
    ap.add_argument("--train", type=int, default=None, help="programs to learn from (default: the first half)")
    ap.add_argument("--turn-latency", type=float, default=1.0, help="seconds per turn besides tool time")
    a = ap.parse_args(argv)
    programs = read_trace(a.trace)
    n_train = a.train if a.train is not None else len(programs) // 2
    if not 0 < n_train < len(programs):
        ap.error(f"--train must be between 1 and {len(programs) - 1}")
    work = train(programs[:n_train], a.turn_latency)
    rows = pairs(work, programs[n_train:], a.turn_latency)
    k, pred, true = (np.array(c) for c in zip(*rows))
    print(f"held-out programs: {len(programs) - n_train} (trained on {n_train}); pairs: {len(rows)}")
    print("| turns done | pairs | Kendall tau-b (predicted vs true remaining seconds) |\n|---|---|---|")
    print(f"| all | {len(rows)} | {kendall_tau_b(pred, true):.3f} |")
    for kk in sorted(set(k.tolist()))[:12]:
        sel = k == kk
        print(f"| {kk} | {int(sel.sum())} | {kendall_tau_b(pred[sel], true[sel]):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
