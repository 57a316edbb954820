"""The evaluation harness (installed as ``continuum_eval``): it drives servers and the simulator from outside,
never runs inside one.

- `live/`          against real servers: `replay` (a trace played as agents would), `bench` (one server per
                   policy, side by side; `bench_cluster` behind vLLM's router), `runs` (the restart-on-death
                   loop), `demo` (`make demo`);
- `agents_bench/`  real agents (mini-swe-agent, BFCL's own loop) against each policy's server, graded;
- `results/`       one run's metrics (the result JSON) and reports (markdown tables, PNG plots);
- `probes/`        benchmarks and checks run by hand (schedule() overhead, ranking quality, determinism);
- `sim/`           the simulator: `engine/` (vLLM's real scheduler on a virtual clock), `cost/` (step-time
                   models and profiles), `fit/` (fitting those models to measurements);
- `cli.py`, `verb_args.py`: the `continuum replay` / `bench` verbs and the argument checks the verbs share.
"""
