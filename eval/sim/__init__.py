"""The simulator: vLLM's real scheduler and KV cache manager on a virtual clock, with a GPU cost model.

Vidur's split: entities, events and the execution-time predictor kept apart, and the simulator depends on
workloads, never on the live replay.

- `engine/`  entities and events: `vllm_offline` (vLLM schedulers built without an engine), `core` (one engine's
             step), `loop` (the one event loop: arrivals, steps, tool waits, for one engine, replicas or lockstep
             ranks), `routing`, `entities` (programs, turns, token ids), `clock`, `isolated` (each program alone:
             slowdown's denominator), `transfers` (a stand-in for the host-tier copy worker)
- `cost/`    the execution-time predictor: `specs` (hardware and model shapes), `costmodel` (roofline for GPUs,
             fitted for the CPU), `profiles` (cost model + engine shape + KV pool)
- `fit/`     fitting the predictor: `calibration` (Vidur's measured linear layers), `h200` (measured H200 steps),
             `profile_cpu` / `replay_fit` (the live CPU engine), `fidelity` (live vs simulated)
- `run`      `simulate_result`: one run's result JSON; `cli` (``continuum sim``, ``continuum profile``),
             `sweep` (every preset at every load), `scaleout` (replicas and lockstep ranks)
"""
