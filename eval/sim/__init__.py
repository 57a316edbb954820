"""The simulator: vLLM's real scheduler and KV cache manager on a virtual clock, with a GPU cost model.

One concept per file:

- `specs`       hardware and model shapes (public constants)
- `costmodel`   execution-time predictors: roofline (GPU) and fitted (CPU)
- `calibration` the roofline against measured GPU linear-layer timings (Vidur)
- `profiles`    named profiles: cost model + engine shape + KV pool size
- `clock`       the virtual clock
- `entities`    programs, turns and their token ids
- `core`        one engine: schedule(), the step's cost, fabricated outputs
- `loop`        the event loop of every run (one engine, replicas, lockstep ranks): arrivals, steps, tool waits
- `routing`     which engine a turn goes to
- `vllm_offline` vLLM schedulers built without an engine
- `isolated`    each program alone on an idle engine (slowdown's denominator), memoized
- `run`         `simulate_result`: one run's result JSON
- `cli`         ``continuum sim`` and ``continuum profile``
- `profile_cpu` measures the live CPU engine and fits the ``cpu`` profile
"""
