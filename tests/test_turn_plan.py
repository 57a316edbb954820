"""The shared turn plan: what a trace turn becomes as a request, for the live replay and the simulator alike."""

from __future__ import annotations

import subprocess
import sys

from continuum_workloads import Program, Turn, transforms
from continuum_workloads.transforms import fit_program, scale_program
from continuum_workloads.turn_plan import VOCAB, plan_turn, synthetic_ids


def program() -> Program:
    return Program(id="p1", workload="t", turns=[Turn(new_input_tokens=50, output_tokens=8, tool="grep", tool_s=0.5),
                                                 Turn(new_input_tokens=20, output_tokens=4, tool=None, tool_s=0.0)])


def test_plan_carries_ids_budget_and_hints():
    p = program()
    first, last = plan_turn(p, 0, seed=3), plan_turn(p, 1, seed=3)
    assert len(first.new_ids) == 50 and all(VOCAB[0] <= i < VOCAB[1] for i in first.new_ids)
    assert first.max_tokens == 8 and first.hints() == {"tool": "grep"} and first.tool_s == 0.5
    assert last.hints() == {"is_last_step": True} and last.is_last_step
    # Seeded: the same seed plans the same ids, another seed other ids; stand-ins differ from inputs.
    assert plan_turn(p, 0, seed=3).new_ids == first.new_ids != plan_turn(p, 0, seed=4).new_ids
    assert first.stand_in_output() == synthetic_ids(8, seed=3, program_id="p1", turn=0, lo=VOCAB[0], hi=VOCAB[1],
                                                    salt=1)
    assert len(first.stand_in_output(3)) == 3 and first.stand_in_output(3) != first.new_ids[:3]


def test_scale_and_fit_keep_the_shape():
    p = program()
    half = scale_program(p, 0.5, tool_factor=2.0)
    assert [t.new_input_tokens for t in half.turns] == [25, 10] and half.turns[0].tool_s == 1.0
    fitted = fit_program(p, 41)
    assert fitted.final_context() <= 41 and len(fitted.turns) == 2 and fitted.turns[0].tool == "grep"


def test_the_simulator_plans_turns_without_the_live_replay():
    code = ("import sys, continuum_eval.sim.run, continuum_eval.sim.engine.entities as e, "
            "continuum_workloads.turn_plan as tp; "
            "assert 'continuum_eval.live.replay' not in sys.modules, 'simulator imports the live replay'; "
            "assert e.plan_turn is tp.plan_turn; print('ok')")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and p.stdout.strip().endswith("ok"), p.stderr[-2000:]
    # The replay and the simulator plan turns and shape traces with the same functions, those of workloads.
    from continuum_eval.live import replay
    from continuum_eval.sim import cli as sim_cli
    from continuum_eval.sim import run as sim_run
    from continuum_eval.sim.engine import entities

    assert replay.plan_turn is entities.plan_turn is plan_turn
    assert replay.shape_programs is sim_cli.shape_programs is transforms.shape_programs
    assert sim_run.fit_program is fit_program is transforms.fit_program
