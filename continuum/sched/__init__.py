"""The engine core: what runs inside vLLM's scheduler, in the engine-core process.

`scheduler` is vLLM's `Scheduler` (and `AsyncScheduler`) with a mixin at its seams; every policy decision is a
component that sees the scheduler only through the read-only `view.SchedulerView` (which `answers` implements)
and acts through callbacks the scheduler hands it: `programs` (sessions), `turns` (what a turn's arrival and
finish teach, and retention: how long a finished turn's KV stays pinned), `pins` (pinned KV over vLLM's block
pool), `admission` (the door; `compute_admission` adds a throughput limit learnt by `step_model`), `ordering` (the
waiting queue), `priority` (terms summed into a level), `classes` (LS/BE), `phases` (adaptive terms), `preemption`
(room for urgent work), `balance` and `rank_board` (data-parallel ranks in lockstep). `report` builds the session
state and stats the control channel sends.
"""
