"""Micro-benchmark of one TTL decision (``python -m kvttl.microbench``).

The decision runs on the scheduler's hot path, once per finished turn, so it has to
stay far below a millisecond. This prints, for a tool with ``--samples`` recorded
durations (heavy-tailed, like agent tool calls):

- ``choose_ttl``: the bare rule over the predictor's sorted samples;
- ``TTLPolicy.decide``: the whole decision (stage lookup, R, T, eta, the rule);
- ``record``: adding one duration sample (keeps the windows sorted incrementally);
- ``pin+release``: one pin of a 64-block context and its release.

Each figure is the median over ``--repeat`` timed calls (after a warm-up).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from .pin_table import PinTable
from .policy import TTLPolicy
from .predictor import ToolDurationPredictor
from .ttl_rule import choose_ttl


def _median_us(fn, repeat: int) -> float:
    for _ in range(min(100, repeat)):
        fn()
    times = []
    clock = time.perf_counter_ns
    for _ in range(repeat):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return statistics.median(times) / 1000.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kvttl.microbench", description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    n = args.samples
    predictor = ToolDurationPredictor(window=n, global_window=n, min_tool_samples=10, min_global_samples=10)
    # Lognormal with mean about 0.9 s and a heavy tail, like coding-agent tool calls.
    for x in rng.lognormal(mean=-1.2, sigma=1.5, size=n):
        predictor.record("pytest", float(x))
    policy = TTLPolicy("model", predictor=predictor)
    for d in rng.exponential(1.0, size=64):
        policy.observe_miss_delay(float(d))
    for t in rng.integers(5, 16, size=200):
        policy.observe_program_end(int(t))
    samples = predictor.samples_for("pytest")
    assert predictor.stage_for("pytest") == "tool" and len(samples) == n

    rule_us = _median_us(lambda: choose_ttl(samples, 1.5, 0.8, 4.0, presorted=True), args.repeat)
    decide_us = _median_us(lambda: policy.decide("pytest", 8000, 3), args.repeat)
    extra = iter(rng.lognormal(mean=-1.2, sigma=1.5, size=args.repeat + 100).tolist())
    record_us = _median_us(lambda: predictor.record("pytest", next(extra)), args.repeat)
    table = PinTable(cap_blocks=1 << 20)
    blocks = list(range(64))

    def pin_release() -> None:
        table.pin("p", blocks, now=0.0, ttl_s=1.0, benefit=1.0, arrival_order=0)
        table.release("p", "hit")

    pin_us = _median_us(pin_release, args.repeat)
    decision = policy.decide("pytest", 8000, 3)
    print(f"kvttl micro-benchmark: {n} samples, median of {args.repeat} calls")
    print(f"  choose_ttl          {rule_us:8.1f} us")
    print(f"  TTLPolicy.decide    {decide_us:8.1f} us   (ttl {decision.ttl_s:.3f} s, p_hit {decision.p_hit:.2f})")
    print(f"  record (sorted)     {record_us:8.1f} us")
    print(f"  pin+release (64 b)  {pin_us:8.1f} us")
    print(f"one TTL decision over {n} samples: {decide_us / 1000.0:.4f} ms (budget: far below 1 ms)")


if __name__ == "__main__":
    main()
