"""Benchmark (not a test): schedule() time per step, vLLM's scheduler vs Continuum's, side by side.

1,000 programs have run one turn each; 500 of them hold pins (Continuum); 64 requests decode while 256 more
wait for a slot (so the waiting-queue ordering is exercised every step). Both
schedulers are vLLM's real ones over the same pool; we time the steady decode steps and print the ratio.

    python -m eval.sched_overhead [--programs 1000] [--pins 500] [--steps 200]
"""

from __future__ import annotations

import argparse
import statistics
import time

from tqdm import tqdm
from vllm.v1.core.sched.scheduler import Scheduler

from continuum.config import ContinuumConfig
from continuum.offline import build_scheduler, fabricate_output, make_request, run_step
from continuum.scheduler import ContinuumScheduler

BS = 32


def prepare(cls, programs: int, pins: int, **kw):
    s = build_scheduler(cls, num_blocks=programs * 4 + 2048, block_size=BS, max_num_seqs=64,
                        max_num_batched_tokens=8192, **kw)
    for p in tqdm(range(programs), desc=f"{cls.__name__}: first turns", leave=False):
        pinned = p < pins
        s.add_request(make_request(f"p{p}-1", list(range(p * 100 + 10, p * 100 + 106)), 2,
                                   session_id=f"P{p}", is_last_step=not pinned))
        if p % 128 == 127:
            while s.has_requests():
                run_step(s)
    while s.has_requests():
        run_step(s)
    for q in range(64 + 256):  # the decode batch being timed, and the queue behind it
        s.add_request(make_request(f"q{q}", list(range(900_000 + q * 64, 900_000 + q * 64 + 64)), 10_000,
                                   session_id=f"P{q + pins}"))
    for _ in range(3):
        run_step(s)
    return s


def time_steps(s, steps: int) -> list[float]:
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        out = s.schedule()
        times.append(time.perf_counter() - t0)
        s.update_from_output(out, fabricate_output(s, out))
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--programs", type=int, default=1000)
    ap.add_argument("--pins", type=int, default=500)
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    cfg = ContinuumConfig(ttl_mode="preserve", pin_cap=1.0)
    vllm = prepare(Scheduler, args.programs, args.pins)
    cont = prepare(ContinuumScheduler, args.programs, args.pins, continuum_config=cfg)
    print(f"Continuum holds {len(cont.pins.table)} pins ({cont.pins.pinned_blocks} blocks) "
          f"over {len(cont.programs)} programs")
    rows = []
    for name, s in (("vllm", vllm), ("continuum", cont)):
        t = sorted(time_steps(s, args.steps))
        rows.append((name, statistics.mean(t) * 1e3, t[len(t) // 2] * 1e3, t[int(0.99 * (len(t) - 1))] * 1e3))
    print("| scheduler | mean ms/step | p50 ms | p99 ms |\n|---|---|---|---|")
    for name, mean, p50, p99 in rows:
        print(f"| {name} | {mean:.3f} | {p50:.3f} | {p99:.3f} |")
    print(f"ratio continuum/vllm (mean): {rows[1][1] / rows[0][1]:.2f}x")


if __name__ == "__main__":
    main()
