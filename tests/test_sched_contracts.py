"""The contracts between the scheduler and its parts: components see only `SchedulerView` (checked on their
source, and by running them over a stand-in view), act only through the callbacks they are given, rank by a
named `Priority` that vLLM's victim choice still orders, and vLLM's block-holder queue stays vLLM's."""

from __future__ import annotations

import ast
import contextlib
from pathlib import Path

import pytest
from vllm.v1.core.sched.interface import PauseState

from continuum.policy.presets import resolve
from continuum.sched.balance import AnyFullBalance
from continuum.sched.classes import BE, LS
from continuum.sched.ordering import ProgramQueue
from continuum.sched.preemption import Preemption
from continuum.sched.rank_board import LocalBoard
from continuum.sched.scheduler import ContinuumScheduler, scheduler_for
from continuum.sched.view import Priority, SchedulerView, Urgency
from continuum_eval.sim.engine.vllm_offline import build_scheduler, make_request, run_step

ROOT = Path(__file__).resolve().parents[1]
COMPONENTS = ("admission", "compute_admission", "balance", "classes", "ordering", "phases", "preemption", "priority",
              "turns")
VIEW_MEMBERS = {n for n in vars(SchedulerView) if not n.startswith("_")} | set(SchedulerView.__annotations__)


def make(policy: str, max_num_seqs: int = 8, **overrides):
    cls, ctor = scheduler_for(policy, **overrides)
    return build_scheduler(cls, num_blocks=256, block_size=32, max_num_seqs=max_num_seqs, **ctor)


# -- what components may touch, read off their source ----------------------------------------------------------
def violations(source: str) -> list[str]:
    """What a component's source reaches beyond the view: a scheduler handed in, an attribute of the view that
    `SchedulerView` does not name, or a private attribute of another object."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.arg) and node.arg == "sched" or isinstance(node, ast.Name) and node.id == "sched":
            bad.append("the scheduler itself")
        if not isinstance(node, ast.Attribute):
            continue
        value = node.value
        on_view = isinstance(value, ast.Name) and value.id in ("view", "v") or \
            isinstance(value, ast.Attribute) and value.attr == "view" and isinstance(value.value, ast.Name)
        if on_view and node.attr not in VIEW_MEMBERS:
            bad.append(f"view.{node.attr}")
        own = isinstance(value, ast.Name) and value.id in ("self", "cls") or \
            isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "super"
        if node.attr.startswith("_") and not node.attr.startswith("__") and not own:
            bad.append(f"private .{node.attr}")
    return bad


@pytest.mark.parametrize("module", COMPONENTS)
def test_a_component_reads_the_scheduler_through_the_view_only(module):
    assert violations((ROOT / "continuum" / "sched" / f"{module}.py").read_text()) == []


def test_no_private_attribute_of_another_object_in_the_engine_side_packages():
    for folder in ("sched", "control"):
        for path in sorted((ROOT / "continuum" / folder).glob("*.py")):
            assert [v for v in violations(path.read_text()) if v.startswith("private")] == [], path.name


def test_the_source_check_finds_what_it_forbids():
    source = "def f(sched, view):\n    view.kv_cache_manager\n    self.view._pause_state\n    view.waiting_head()\n" \
             "    super()._preempt_request\n    sched.running\n"
    assert sorted(violations(source)) == ["private ._pause_state", "the scheduler itself", "the scheduler itself",
                                          "view._pause_state", "view.kv_cache_manager"]


def test_the_scheduler_answers_every_question_of_the_view():
    s = make("continuum")
    assert all(hasattr(s, name) for name in VIEW_MEMBERS)


# -- the priority key ------------------------------------------------------------------------------------------
def test_ranked_requests_carry_a_named_priority_that_vllm_orders():
    s = make("ls-be", max_num_seqs=4)
    s.add_request(make_request("ls", list(range(100, 164)), 4, session_id="L", **{"class": "ls"}))
    s.add_request(make_request("be", list(range(200, 264)), 4, session_id="B"))
    s.add_request(make_request("be-last", list(range(300, 364)), 4, session_id="E", is_last_step=True))
    ls, be, last = (s.requests[r].priority for r in ("ls", "be", "be-last"))
    assert isinstance(ls, Priority) and (ls.cls, be.cls) == (LS, BE) and ls.urgency == Urgency(LS, 0)
    assert (last.protected, be.protected) == (-1, 0) and be.order == 1
    run_step(s)
    # vLLM's own victim choice when a running request cannot grow: max over (priority, arrival).
    victim = max(s.running, key=lambda r: (r.priority, r.arrival_time))
    assert victim.request_id == "be"  # best-effort before latency-sensitive; a last step after the others


def test_without_ranking_components_the_priority_stays_a_plain_int():
    s = make("continuum")
    s.add_request(make_request("a", list(range(100, 164)), 4, session_id="A"))
    s.add_request(make_request("b", list(range(200, 264)), 4, session_id="B", is_last_step=True))
    assert (s.requests["a"].priority, s.requests["b"].priority) == (0, -1)


# -- components over a stand-in view -----------------------------------------------------------------------------
class StandIn:
    """Only what preemption and balance ask, by the view's names."""

    block_size = 16
    max_num_running_reqs = 8
    max_num_scheduled_tokens = 512

    def __init__(self, head=None, running=(), free: int = 0) -> None:
        self.head, self.running, self.free = head, list(running), free

    def waiting_head(self):
        return self.head

    def running_requests(self):
        return self.running

    def urgency(self, request) -> Urgency:
        return request.priority.urgency

    def cached_tokens(self, request) -> int:
        return 0

    def reclaimable_blocks(self) -> int:
        return self.free


def ranked(rid: str, cls: int, level: float, order: int, protected: int = 0):
    request = make_request(rid, list(range(1000, 1064)), 4)
    request.priority = Priority(protected, cls, level, order)
    return request


def test_preemption_takes_the_worst_ranked_first_and_stops_once_the_head_fits():
    head = ranked("head", LS, 0.0, 9)  # 64 tokens: 4 blocks of 16, and one more
    running = [ranked("ls", LS, 0.0, 0), ranked("be1", BE, 0.0, 1), ranked("be2", BE, 2.0, 2),
               ranked("be-last", BE, 5.0, 3, protected=-1)]
    view = StandIn(head, running, free=0)
    preempted = []

    def preempt(request) -> None:  # what the scheduler does: out of running, its 3 blocks freed
        preempted.append(request.request_id)
        view.running.remove(request)
        view.free += 3

    assert Preemption(view, True, preempt).make_room() == 2
    assert preempted == ["be2", "be1"]  # never the equal-ranked LS request, never a program's last step
    view.free = 0
    assert Preemption(view, False, preempt).make_room() == 0  # off without ranking components


def test_balance_asks_the_scheduler_to_hold_and_counts_only_real_holds():
    board = LocalBoard(2)
    calls = []

    def hold(result: bool):
        @contextlib.contextmanager
        def _hold():
            calls.append(result)
            yield result

        return _hold

    for vllm_paused_already in (False, True):
        balance = AnyFullBalance(resolve("continuum", balance="any-full"), StandIn(), hold(not vllm_paused_already),
                                 board, rank=0)
        board.publish(1, 0)
        with balance.gate():
            pass
        board.publish(1, 8)  # the other rank is full
        with balance.gate():
            pass
        assert balance.holds == (0 if vllm_paused_already else 1) and balance.steps == 2
    assert calls == [True, False]  # asked only while a rank was full


def test_the_scheduler_holds_admissions_through_vllms_pause_state_and_gives_it_back():
    s = make("continuum")
    with s.hold_admissions() as held:
        assert held and s.pause_state == PauseState.PAUSED_NEW
    assert s.pause_state == PauseState.UNPAUSED
    s.set_pause_state(PauseState.PAUSED_ALL)  # paused by someone else: not ours to hold or to undo
    with s.hold_admissions() as held:
        assert not held
    assert s.pause_state == PauseState.PAUSED_ALL


# -- vLLM's second waiting queue ---------------------------------------------------------------------------------
def test_preempted_work_returns_to_continuums_queue_and_vllms_block_holder_queue_stays_vllms():
    s = make("ls-be", max_num_seqs=1)
    assert isinstance(s, ContinuumScheduler) and isinstance(s.waiting, ProgramQueue)
    assert not isinstance(s.kv_holding_waiting, ProgramQueue)
    s.add_request(make_request("be", list(range(100, 164)), 500, session_id="BE"))
    run_step(s)
    s.add_request(make_request("ls", list(range(5000, 5064)), 4, session_id="LS", **{"class": "ls"}))
    out, _ = run_step(s)
    assert "be" in out.preempted_req_ids and [r.request_id for r in s.waiting] == ["be"]
    assert len(s.kv_holding_waiting) == 0  # its computed tokens were reset: it holds no blocks while it waits
