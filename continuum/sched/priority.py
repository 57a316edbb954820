"""Priority terms: the MLFQ fork's features as small components summed into a request's *level*.

A waiting request is served in order of (held, class, level, tier, order...) (`continuum.sched.ordering`): a lower
level goes first, after the admission door and the class. Each term adds to the level; the registry
(`continuum.policy.presets`) documents their knobs:

- ``demotion``: + tokens the request has been served // ``chunk`` (MLFQ). Kept across preemption (vLLM resets a
  preempted request's computed tokens; we count service ourselves).
- ``sjf``: + ramp * (w_p * remaining prompt + w_d * remaining output) / ``scale``, where ramp = min(1, waiting
  requests / ``ramp``): short jobs first, and only as the queue grows.
- ``las``: + tokens the *program* has been served, across its turns and preemptions, // ``chunk``.
- ``aging``: - whole ``aging_s`` periods waited * (1 + waiting requests / ``depth``): nothing waits forever.
- ``locality``: - ``boost`` * the fraction of the prompt in the prefix cache *when the request arrives* (so a new
  request gets it too, not only one that was scheduled before).
- ``backpressure``: + ``penalty`` while the request has ``lag_tokens`` more output tokens than its client has read
  SSE events of its stream (about one per token); such a request is also held out of the next decode steps, so
  its lag stops growing (its KV stays).

Terms read the scheduler through `continuum.sched.view.SchedulerView`. The same level orders the running requests
for preemption (vLLM preempts the highest ``priority``, a `continuum.sched.view.Priority`).
"""

from __future__ import annotations

from vllm.v1.request import Request

from continuum.policy.config import ContinuumConfig
from continuum.sched.view import SchedulerView


class Term:
    name = ""
    # Its value changes while a request waits: the scheduler re-sorts the queue every RESORT_EVERY_S.
    dynamic = False

    def __init__(self, cfg: ContinuumConfig, view: SchedulerView) -> None:
        self.view = view
        self.k = cfg.knobs_of(self.name)  # read once: levels are computed for every waiting request

    def arrive(self, request: Request) -> None:
        """Called once when the request enters the scheduler."""

    def forget(self, request_id: str) -> None:
        """The request left the scheduler: drop what the term kept about it."""

    def level(self, request: Request) -> float:
        raise NotImplementedError


class Demotion(Term):
    name = "demotion"

    def level(self, request: Request) -> float:
        return self.view.served_tokens(request.request_id) // max(1, int(self.k["chunk"]))


class SJF(Term):
    name = "sjf"
    dynamic = True  # the ramp follows the queue's length

    def level(self, request: Request) -> float:
        ramp = min(1.0, self.view.num_waiting() / max(1.0, self.k["ramp"]))
        prefill = max(0, request.num_prompt_tokens - request.num_computed_tokens)
        decode = max(0, (request.max_tokens or 0) - request.num_output_tokens)
        work = self.k["prefill_weight"] * prefill + self.k["decode_weight"] * decode
        return ramp * work / max(1.0, self.k["scale"])


class LAS(Term):
    name = "las"

    def level(self, request: Request) -> float:
        prog = self.view.program_of(request)
        attained = prog.attained_tokens if prog is not None else self.view.served_tokens(request.request_id)
        return attained // max(1, int(self.k["chunk"]))


class Aging(Term):
    name = "aging"
    dynamic = True

    def level(self, request: Request) -> float:
        waited = max(0.0, self.view.clock() - request.arrival_time)
        speed = 1.0 + self.view.num_waiting() / max(1.0, self.k["depth"])
        return -(waited // max(1e-9, self.k["aging_s"])) * speed


class Locality(Term):
    name = "locality"

    def __init__(self, cfg: ContinuumConfig, view: SchedulerView) -> None:
        super().__init__(cfg, view)
        self.cached: dict[str, float] = {}  # request id -> fraction of its prompt cached at arrival

    def arrive(self, request: Request) -> None:
        self.cached[request.request_id] = self.view.cached_fraction(request)

    def forget(self, request_id: str) -> None:
        self.cached.pop(request_id, None)

    def level(self, request: Request) -> float:
        return -self.k["boost"] * self.cached.get(request.request_id, 0.0)


class Backpressure(Term):
    name = "backpressure"
    dynamic = True

    def lagging(self, request: Request) -> bool:
        """Its output is ``lag_tokens`` ahead of what its client has read (SSE events, about one per token)."""
        read = self.view.read_events(request.request_id)
        return read is not None and request.num_output_tokens - read >= self.k["lag_tokens"]

    def level(self, request: Request) -> float:
        return self.k["penalty"] if self.lagging(request) else 0.0


TERMS: dict[str, type[Term]] = {t.name: t for t in (Demotion, SJF, LAS, Aging, Locality, Backpressure)}


class Levels:
    """The active terms of a policy, summed. ``active`` may be narrowed each step (phase switching)."""

    def __init__(self, cfg: ContinuumConfig, view: SchedulerView, names: list[str]) -> None:
        self.all = {n: TERMS[n](cfg, view) for n in names}
        self.set_active(list(self.all))

    def set_active(self, names: list[str]) -> None:
        self.active = [self.all[n] for n in names if n in self.all]
        self.active_names = [t.name for t in self.active]
        self.dynamic = any(t.dynamic for t in self.active)

    def arrive(self, request: Request) -> None:
        for term in self.all.values():
            term.arrive(request)

    def forget(self, request_id: str) -> None:
        for term in self.all.values():
            term.forget(request_id)

    def level(self, request: Request) -> float:
        return sum(t.level(request) for t in self.active)

    def backpressure(self) -> Backpressure | None:
        term = self.all.get("backpressure")
        return term if term in self.active else None
