"""Benchmark (not a test): schedule() time per step, vLLM's scheduler vs every Continuum preset, side by side.

1,000 programs have run one turn each; 500 of them hold pins (Continuum presets that pin; their retention is
set to ``preserve`` so the pins stay for the whole measurement); 64 requests decode while 256 more wait for a
slot (so the waiting-queue ordering is exercised every step). All schedulers are vLLM's real ones over the same
pool. Steps are timed round-robin across the schedulers (one step of each in turn), so machine noise falls on
all of them alike; we print mean and median ms per step and each preset's ratio to vLLM.

    python -m continuum_eval.probes.sched_overhead [--programs 1000] [--pins 500] [--steps 400] \\
        [--policies vllm,continuum,...]
"""

from __future__ import annotations

import argparse
import statistics
import time

from tqdm import tqdm

from continuum.policy.presets import PRESETS, parse_policies, resolve
from continuum.policy.registry import ConfigError
from continuum.sched.scheduler import scheduler_for
from continuum.serve.verbs import setup_logging
from continuum_eval.sim.engine.vllm_offline import build_scheduler, fabricate_output, make_request, run_step

BS = 32


def prepare(policy: str, programs: int, pins: int):
    overrides = {}
    if (cfg := resolve(policy)) is not None:
        overrides = {"pin_cap": 1.0, **({"ttl_mode": "preserve"} if cfg.ttl_mode != "off" else {})}
    cls, ctor = scheduler_for(policy, **overrides)
    s = build_scheduler(cls, num_blocks=programs * 4 + 2048, block_size=BS, max_num_seqs=64,
                        max_num_batched_tokens=8192, **ctor)
    for p in tqdm(range(programs), desc=f"{policy}: first turns", leave=False):
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


def time_round_robin(scheds: dict, steps: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in scheds}
    for _ in tqdm(range(steps), desc="timing", leave=False):
        for name, s in scheds.items():
            t0 = time.perf_counter()
            out = s.schedule()
            times[name].append(time.perf_counter() - t0)
            s.update_from_output(out, fabricate_output(s, out))
    return times


def main() -> None:
    setup_logging()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--programs", type=int, default=1000)
    ap.add_argument("--pins", type=int, default=500)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--policies", default=",".join(p for p in PRESETS if p != "oracle"),
                    help="presets to time (vllm is always the baseline)")
    args = ap.parse_args()
    try:
        names = ["vllm"] + [p for p in parse_policies(args.policies) if p != "vllm"]
    except ConfigError as exc:
        ap.error(f"--policies: {exc}")
    scheds = {name: prepare(name, args.programs, args.pins) for name in names}
    cont = scheds.get("continuum")
    if cont is not None:
        print(f"Continuum holds {len(cont.pins.table)} pins ({cont.pins.pinned_blocks} blocks) "
              f"over {len(cont.programs)} programs")
    times = time_round_robin(scheds, args.steps)
    base_mean, base_p50 = statistics.mean(times["vllm"]), statistics.median(times["vllm"])
    print("| scheduler | mean ms/step | p50 ms | p99 ms | mean / vllm | p50 / vllm |\n|---|---|---|---|---|---|")
    for name, t in times.items():
        t = sorted(t)
        mean, p50 = statistics.mean(t), t[len(t) // 2]
        print(f"| {name} | {mean * 1e3:.3f} | {p50 * 1e3:.3f} | {t[int(0.99 * (len(t) - 1))] * 1e3:.3f} "
              f"| {mean / base_mean:.2f}x | {p50 / base_p50:.2f}x |")
    if "continuum" in times:
        print(f"ratio continuum/vllm (mean): {statistics.mean(times['continuum']) / base_mean:.2f}x")


if __name__ == "__main__":
    main()
