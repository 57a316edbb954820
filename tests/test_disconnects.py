"""Aborted turns on vLLM's real scheduler: a client that gave up (disconnect, abort) leaves no pin; a stop string,
which reaches the engine as an abort too, is a finished turn and still pins."""

from __future__ import annotations

from vllm.v1.request import RequestStatus

from continuum.control.engine_side import EngineControl
from continuum.policy.config import ContinuumConfig
from continuum.sched.scheduler import ContinuumScheduler
from continuum_eval.sim.engine.vllm_offline import build_scheduler, make_request, run_step

BS = 32


def make():
    s = build_scheduler(ContinuumScheduler, num_blocks=64, block_size=BS,
                        continuum_config=ContinuumConfig(ttl_mode="preserve"))
    s.clock = lambda: 0.0
    return s


def turn(s, rid: str, prompt_start: int, stop: list[str] | None = None, steps: int = 3):
    """A turn of program A that has produced some output and is still running."""
    request = make_request(rid, list(range(prompt_start, prompt_start + 100)), 50, session_id="A")
    if stop:
        request.sampling_params.stop = stop
    s.add_request(request)
    for _ in range(steps):
        run_step(s)
    assert request.num_output_tokens > 0 and not request.is_finished()
    return request


def finish(s) -> None:
    while s.has_requests():
        run_step(s)


def pinned(s) -> int:
    pin = s.pins.table.get("A")
    return len(pin.blocks) if pin else 0


def abort(s, rid: str) -> None:
    s.finish_requests([rid], RequestStatus.FINISHED_ABORTED)


def test_a_finished_turn_is_pinned():
    s = make()
    turn(s, "a1", 1000)
    finish(s)
    assert pinned(s) == 4  # 100 + 49 tokens with KV: four full, hashed blocks


def test_an_aborted_turn_with_output_is_not_pinned():
    s = make()
    turn(s, "a1", 1000)
    abort(s, "a1")  # a client disconnect or an abort call: vLLM says FINISHED_ABORTED either way
    assert pinned(s) == 0 and s.pins.table.counters["created"] == 0


def test_a_stop_string_finish_still_pins():
    s = make()
    turn(s, "a1", 1000, stop=["</done>"])
    abort(s, "a1")  # the API process found the stop string and aborted the request
    assert pinned(s) > 0


def test_the_word_that_the_client_left_comes_before_the_abort():
    s = make()
    turn(s, "a1", 1000, stop=["</done>"])
    reply = EngineControl(s).handle({"op": "disconnect", "id": "A"})
    assert reply["ok"] and "a1" in s.gone
    abort(s, "a1")
    assert pinned(s) == 0 and not s.gone


def test_the_word_after_the_abort_releases_the_pin_it_took():
    s = make()
    turn(s, "a1", 1000, stop=["</done>"])
    abort(s, "a1")
    assert pinned(s) > 0
    EngineControl(s).handle({"op": "disconnect", "id": "A"})
    assert pinned(s) == 0 and s.pins.table.counters["released_abort"] == 1


def test_the_existing_pin_is_released_when_the_next_turn_is_aborted_before_output():
    s = make()
    turn(s, "a1", 1000)
    finish(s)
    assert pinned(s) > 0
    s.add_request(make_request("a2", list(range(5000, 5100)), 8, session_id="A"))
    abort(s, "a2")  # never scheduled: the client gave up while it waited
    assert pinned(s) == 0 and s.pins.table.counters["released_abort"] == 1


def test_a_disconnect_for_an_unknown_program_is_a_404_and_marks_nothing():
    s = make()
    assert EngineControl(s).handle({"op": "disconnect", "id": "nobody"})["status"] == 404
    assert not s.gone
