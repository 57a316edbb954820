"""Program admission: when a new program may start.

``open``: every program starts at once, as in vLLM.

``memory``: a program's first turn waits at the door until the KV pool can hold the working sets of the
programs already admitted plus its own. A program's working set is its context now (the prompt and output of
the turn in flight, or the context its last turn left) plus the context it is predicted to add over the next
``horizon`` turns (`kvttl.ProgramWork`, or the true future for the clairvoyant). Pinned or not, a program in a
tool call counts: it is coming back for that context, and serving it without its KV is the thrash admission
exists to prevent. Everything is in blocks of this pool, so the limit follows the model, the GPU and the trace.
``memory.programs`` (0: none) adds a fixed limit on the programs in service: the simulator's best oracle is the
clairvoyant door searched over that limit (`continuum_eval.sim.oracle`).

Waiting at the door means sorting last in the waiting queue (`continuum.sched.ordering`), never being refused: the
wait counts in the program's JCT. The door opens in the waiting queue's own order (shortest predicted remaining
work with aging, under the ``srpt`` ordering), strictly: a program that does not fit stops the ones behind it,
so the aging that moves it forward is enough to bound every wait. With no program admitted, the head is admitted
whatever its size, so a program larger than the pool still runs (alone). Requests without a program are never
held.

``cap``: the same door, limited to ``cap.programs`` programs in service instead of memory: for sweeps of fixed
limits. A door weighs limits as tuples: `MemoryAdmission.room` (what the admitted programs leave of each) against
`MemoryAdmission.need` (what one more takes), so a door with several limits (`continuum.sched.compute_admission`)
only names them.

Admission reads the scheduler through `continuum.sched.view.SchedulerView`; when it may have moved a program
through the door, ``step`` says so and the scheduler re-sorts its waiting queue.
"""

from __future__ import annotations

import math

from vllm.v1.request import Request

from continuum.policy.config import ContinuumConfig
from continuum.sched.classes import Classes
from continuum.sched.programs import Program
from continuum.sched.view import SchedulerView


class OpenAdmission:
    enabled = False

    def __init__(self, cfg: ContinuumConfig, view: SchedulerView, classes: Classes) -> None:
        self.view = view
        self.classes = classes  # latency-sensitive programs skip the door

    def held(self, request: Request) -> int:
        return 0

    def arrive(self, request: Request, prog: Program) -> None:
        """A program's turn arrived (its first: ``prog.turns == 1``)."""

    def end(self, prog: Program) -> None:
        """A program ended."""

    def reserves(self, prog: Program) -> bool:
        """Whether the program's working set is set aside in the admission budget."""
        return False

    def step(self) -> bool:
        """Before each step: admit what may start now. True when the waiting order may have changed."""
        return False

    def scheduled(self, tokens: int, seqs: int, new_seqs: int) -> None:
        """After each step is chosen: its tokens, its requests and how many of them are new turns."""

    def state(self) -> dict:
        return {"mode": "open"}


class MemoryAdmission(OpenAdmission):
    enabled = True

    def __init__(self, cfg: ContinuumConfig, view: SchedulerView, classes: Classes) -> None:
        super().__init__(cfg, view, classes)
        self.horizon = cfg.knob("memory.horizon")
        self.max_programs = int(cfg.knob("memory.programs")) if cfg.admission == "memory" else 0
        self.door: dict[str, Request] = {}  # program id -> its first turn, waiting to be admitted
        self.active: dict[str, Program] = {}  # admitted programs that have not ended
        self.pending = False  # something changed since the door was last looked at
        self.admitted = 0
        self.held_total = 0
        self.wait_s_total = 0.0

    def held(self, request: Request) -> int:
        prog = self.view.program_of(request)
        return 0 if prog is None or prog.admitted else 1

    def arrive(self, request: Request, prog: Program) -> None:
        if prog.turns > 1 or not prog.admitted and prog.program_id in self.door:
            return
        if self.classes.is_ls(request) or not self.door and (not self.active or fits(self.need(prog), self.room())):
            self._admit(prog)  # latency-sensitive, or room and nobody queued ahead of it: straight in
            return
        prog.admitted = False
        self.door[prog.program_id] = request
        self.held_total += 1
        self.pending = True

    def reserves(self, prog: Program) -> bool:
        return prog.program_id in self.active

    def end(self, prog: Program) -> None:
        if self.active.pop(prog.program_id, None) is not None or self.door.pop(prog.program_id, None) is not None:
            self.pending = True

    def step(self) -> bool:
        if not self.door or not (self.pending or self.view.resort_due()):
            return False
        self.pending = False
        room = self.room()
        for request in sorted(self.door.values(), key=self.view.waiting_key):
            prog = self.view.program_of(request)
            if prog is None or prog.ended or request.is_finished():
                self.door.pop(request.session_id, None)
                continue
            need = self.need(prog)
            if self.active and not fits(need, room):
                break  # strictly in order: aging brings the head forward, backfilling could starve it
            room = tuple(r - n for r, n in zip(room, need))
            del self.door[prog.program_id]
            self.wait_s_total += max(0.0, self.view.clock() - prog.first_arrival)
            self._admit(prog)
        return True

    def _admit(self, prog: Program) -> None:
        prog.admitted = True
        self.active[prog.program_id] = prog
        self.admitted += 1

    # -- what the door weighs: the room the admitted programs leave, and what one more needs of it ----------
    def room(self) -> tuple[float, ...]:
        """What the admitted programs leave of each limit (here: free blocks by working sets; programs in service
        when ``memory.programs`` limits them)."""
        if self.max_programs:
            return self.free(), self.max_programs - len(self.active)
        return (self.free(),)

    def need(self, prog: Program) -> tuple[float, ...]:
        """What admitting ``prog`` takes of each limit of `room`."""
        return (self.working_set(prog), 1) if self.max_programs else (self.working_set(prog),)

    # -- working sets, in blocks --------------------------------------------------------------------------
    def capacity(self) -> int:
        return self.view.pool_blocks()

    def free(self) -> int:
        return self.capacity() - sum(self.working_set(p) for p in self.active.values())

    def working_set(self, prog: Program) -> int:
        return self._blocks(prog.context_tokens + self.growth(prog))

    def growth(self, prog: Program) -> float:
        """Context the program is predicted to add over the next ``horizon`` turns."""
        pred = prog.prediction
        if pred is None or pred.turns <= 0:
            return 0.0
        return pred.growth_tokens * min(1.0, self.horizon / pred.turns)

    def _blocks(self, tokens: float) -> int:
        return math.ceil(max(0.0, tokens) / self.view.block_size)

    def state(self) -> dict:
        return {"mode": "memory", "active": len(self.active), "at_door": len(self.door), "admitted": self.admitted,
                "held": self.held_total, "door_wait_s_mean": self.wait_s_total / max(1, self.held_total),
                "capacity_blocks": self.capacity(), "free_blocks_by_working_sets": self.free()}


class CapAdmission(MemoryAdmission):
    """At most ``cap.programs`` programs in service (admitted, not ended), through the same door in the same
    order as ``memory``; memory is not counted, so no working set is reserved (pins follow the TTL rule)."""

    def __init__(self, cfg: ContinuumConfig, view: SchedulerView, classes: Classes) -> None:
        super().__init__(cfg, view, classes)
        self.cap = max(1, int(cfg.knob("cap.programs")))

    def reserves(self, prog: Program) -> bool:
        return False

    def room(self) -> tuple[float, ...]:
        return (self.cap - len(self.active),)

    def need(self, prog: Program) -> tuple[float, ...]:
        return (1,)

    def state(self) -> dict:
        return {**super().state(), "mode": "cap", "cap": self.cap}


def fits(need: tuple[float, ...], room: tuple[float, ...]) -> bool:
    """Whether every limit has room for what one more program needs of it."""
    return all(n <= r for n, r in zip(need, room))
