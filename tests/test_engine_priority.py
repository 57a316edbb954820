"""The engine-core renice: real child processes, real /proc, real nice values."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from continuum.serve import engine_priority

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs Linux /proc")

# A child that names itself, then starts two more threads (they inherit the name) and waits.
CHILD = """
import sys, threading, time
open("/proc/self/comm", "w").write(sys.argv[1])
for _ in range(2):
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
print("ready", flush=True)
time.sleep(60)
"""


def spawn(name: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, name], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def thread_nices(pid: int) -> list[int]:
    return [os.getpriority(os.PRIO_PROCESS, int(t)) for t in os.listdir(f"/proc/{pid}/task")]


@pytest.fixture
def kids():
    procs = [spawn("fake-engine"), spawn("bystander")]
    yield procs
    for p in procs:
        p.kill()
        p.wait()


def test_only_the_named_children_are_reniced_on_every_thread(kids):
    engine, bystander = kids
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    assert engine_priority.children(os.getpid(), "fake-engine") == [engine.pid]
    changed = engine_priority.renice_children(os.getpid(), "fake-engine", 7)
    assert changed == 3  # the main thread and its two threads
    assert thread_nices(engine.pid) == [7, 7, 7]
    assert set(thread_nices(bystander.pid)) == {mine}
    assert os.getpriority(os.PRIO_PROCESS, 0) == mine
    # Already at or above the target: nothing to do, and never lowered back.
    assert engine_priority.renice_children(os.getpid(), "fake-engine", 7) == 0
    assert engine_priority.renice_children(os.getpid(), "fake-engine", 3) == 0
    assert thread_nices(engine.pid) == [7, 7, 7]


def test_the_watcher_catches_a_child_started_after_it():
    assert engine_priority.watch(0, comm="late-engine") is None  # 0 = leave alone
    stop = engine_priority.watch(5, comm="late-engine", interval_s=0.05)
    assert stop is not None
    late = spawn("late-engine")
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and thread_nices(late.pid) != [5, 5, 5]:
            time.sleep(0.05)
        assert thread_nices(late.pid) == [5, 5, 5]
    finally:
        stop.set()
        late.kill()
        late.wait()


def test_a_name_the_kernel_cut_short_is_still_found():
    # vLLM titles its engine core "VLLM::EngineCore": the kernel keeps 15 characters, psutil reports the whole
    # title from the command line. Either way it is the process we look for.
    proc = subprocess.Popen(["fake-engine-core-process", "-c", CHILD, "fake-engine-core-process"],
                            executable=sys.executable, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        assert engine_priority.children(os.getpid(), "fake-engine-core-process") == [proc.pid]
        assert engine_priority.children(os.getpid(), "fake-engine-cor") == [proc.pid]
    finally:
        proc.kill()
        proc.wait()
