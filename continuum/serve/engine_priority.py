"""Keep vLLM's engine-core process from starving the API server and clients on a machine with few cores.

vLLM runs the model in a worker process and the scheduler in an engine-core process. While a step runs, the
engine core waits for the worker's answer by spinning on a shared-memory queue (``sched_yield`` in a loop, for
up to a second after each message). On the CPU backend the worker is pinned to its own cores, so the spin lands
on whatever is left, which is where the API server streams every token and where clients run. On a two-core
machine they waited on the run queue for up to a second at a time, and most of a turn's latency under load was
that wait, not the model. Raising the engine core's nice value lets them run whenever they have work; the engine
core still gets every cycle nobody else wants. The cost: its own work (``schedule()``, pins) then waits behind
them too, which shows when the model rather than the API server is the bottleneck (the smollm2 demo measured
Continuum about 8% slower at nice 19 than at 0); ``--engine-nice`` picks a middle value, or 0 to leave it.

`continuum serve` starts :func:`watch` in the API process, for both policies (it is a property of the deployment,
not of the scheduler): a daemon thread that renices every thread of each engine-core child, again every second
so threads started later are caught. Processes and threads are found with psutil; a thread's nice value is set
with ``setpriority`` on its thread id (Linux gives each thread its own).
"""

from __future__ import annotations

import os
import threading

import psutil

ENGINE_CORE_COMM = "VLLM::EngineCor"  # the kernel keeps 15 characters of a process name
DEFAULT_CPU_NICE = 19


COMM_CHARS = 15


def children(parent: int, comm: str) -> list[int]:
    """Pids of ``parent``'s children whose process name is ``comm``. Compared as the kernel keeps names (15
    characters): psutil reports the longer name from the command line when the kernel's is cut short."""
    try:
        kids = psutil.Process(parent).children()
    except psutil.NoSuchProcess:
        return []
    out = []
    for kid in kids:
        try:
            if kid.name()[:COMM_CHARS] == comm[:COMM_CHARS]:
                out.append(kid.pid)
        except psutil.Error:  # exited meanwhile
            continue
    return sorted(out)


def renice(pid: int, nice: int) -> int:
    """Give every thread of ``pid`` at least ``nice``; returns how many threads were changed."""
    try:
        threads = psutil.Process(pid).threads()
    except psutil.Error:
        return 0
    changed = 0
    for thread in threads:
        try:
            if os.getpriority(os.PRIO_PROCESS, thread.id) < nice:  # PRIO_PROCESS with a thread id: that thread
                os.setpriority(os.PRIO_PROCESS, thread.id, nice)
                changed += 1
        except OSError:  # the thread ended meanwhile
            continue
    return changed


def renice_children(parent: int, comm: str, nice: int) -> int:
    """:func:`renice` every child of ``parent`` named ``comm``; returns how many threads were changed."""
    return sum(renice(pid, nice) for pid in children(parent, comm))


def watch(nice: int, comm: str = ENGINE_CORE_COMM, interval_s: float = 1.0) -> threading.Event | None:
    """Renice this process's engine-core children every ``interval_s`` from a daemon thread, until the returned
    event is set; None (and no thread) when ``nice`` is 0 or the platform has no per-thread nice values."""
    if nice <= 0 or not psutil.LINUX:
        return None
    parent, stop = os.getpid(), threading.Event()

    def loop() -> None:
        while not stop.wait(interval_s):
            renice_children(parent, comm, nice)

    threading.Thread(target=loop, name="continuum-engine-nice", daemon=True).start()
    return stop
