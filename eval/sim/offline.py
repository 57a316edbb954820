"""Where `continuum_eval.sim.engine.vllm_offline` used to be: the scheduler tests still import it from here."""

from continuum_eval.sim.engine.vllm_offline import build_scheduler, fabricate_output, make_request, run_step

__all__ = ["build_scheduler", "fabricate_output", "make_request", "run_step"]
