"""Continuum: agent programs as the unit of scheduling, as a plug-in over an unmodified vLLM.

What runs where (imports point down this list, never up; a test walks the import graph):

- `policy/`   the registry of components, their knobs and the presets, and the validated config that travels
              from `continuum serve` to the engine. No vLLM import: both processes and every entry point use it.
- `tenancy`   the program-id namespace of tenants (pure Python), shared by the HTTP layer and the pin quota.
- `control/`  the request/reply channel between the API process and the engine core, its typed messages, the
              engine side that answers them, and its data-parallel fan-out.
- `sched/`    runs in vLLM's **engine-core process**: the scheduler subclass at vLLM's seams and its components
              (programs, pins, admission, ordering, priority terms, classes, phases, preemption, balance).
- `http/`     runs in vLLM's **API server process**: the ASGI middleware, session and stats routes, request
              validation, keys and tenants, tool-name reading, turn reports, metrics, data-parallel affinity.
- `serve/`    the `continuum` command line, `continuum serve` (vLLM's server with the two above plugged in),
              embedded models and server processes.
- `cluster/`  several replicas behind vLLM's router (`continuum cluster`), and the session-affinity hash.
"""
