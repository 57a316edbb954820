"""A parent that dies without cleaning up takes its children with it: every server started through
`continuum.serve.launch` (replicas, the router, a bench's servers) and its own children (vLLM's engine core) are
gone within seconds of a SIGKILL to the process that started them. The children here are dummies (a sleeping
Python that starts a sleeping grandchild), started exactly as servers are."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from continuum.cluster.router import router_available
from continuum.serve.launch import ServerProcess, free_port
from tests.fake_replica import FakeReplica, start_cluster

# The child starts a grandchild (as `continuum serve` starts vLLM's engine core); either may ignore SIGTERM.
CHILD = """
import signal, subprocess, sys, time
hold = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN) if {stubborn} else None; time.sleep(600)"
subprocess.Popen([sys.executable, "-c", hold])
exec(hold)
"""
# The parent starts the child from a thread that then ends: a death signal tied to the forking thread would
# fire right away, and servers are started from threads (replicas in parallel, the tests' shared server).
PARENT = """
import json, sys, threading, time
from continuum.serve.launch import ServerProcess
server = ServerProcess(None, port=1)
server.cmd = [sys.executable, "-c", sys.argv[1]]
server.orphan_grace_s = float(sys.argv[2])
spawner = threading.Thread(target=server.spawn)
spawner.start()
spawner.join()
print(json.dumps({"child": server.proc.pid, "tether": server.tether.pid}), flush=True)
time.sleep(600)
"""


def gone(p: psutil.Process) -> bool:
    try:
        return p.status() == psutil.STATUS_ZOMBIE  # dead; whoever adopted it has not reaped it yet
    except psutil.NoSuchProcess:
        return True


def wait_gone(procs: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not all(gone(p) for p in procs):
        time.sleep(0.1)
    return [p for p in procs if not gone(p)]


def family(child_pid: int) -> list[psutil.Process]:
    """The child and its grandchild, once the grandchild is there."""
    child = psutil.Process(child_pid)
    deadline = time.monotonic() + 10
    while not child.children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert child.children(), "the dummy server did not start its own child"
    return [child, *child.children()]


@pytest.mark.parametrize("stubborn, grace_s", [(False, 5.0), (True, 1.0)], ids=["polite", "ignores-sigterm"])
def test_a_sigkilled_parent_leaves_no_child_or_grandchild(stubborn, grace_s):
    parent = subprocess.Popen([sys.executable, "-c", PARENT, CHILD.format(stubborn=stubborn), str(grace_s)],
                              stdout=subprocess.PIPE, text=True)
    try:
        pids = json.loads(parent.stdout.readline())
        procs = family(pids["child"]) + [psutil.Process(pids["tether"])]
        time.sleep(0.5)
        assert not [p for p in procs if gone(p)], "the child died with the thread that started it"
        parent.kill()
        parent.wait(10)
        left = wait_gone(procs, grace_s + 5)
        assert not left, f"still running after the parent's SIGKILL: {[p.cmdline() for p in left]}"
    finally:
        parent.kill()
        for p in psutil.Process().children(recursive=True):
            p.kill()


def test_a_stopped_server_leaves_no_tether_or_straggler():
    server = ServerProcess(None, port=1)
    server.cmd = [sys.executable, "-c", CHILD.format(stubborn=False)]
    server.spawn()
    procs = family(server.proc.pid) + [psutil.Process(server.tether.pid)]
    os.kill(server.proc.pid, signal.SIGKILL)  # the server dies alone; its own child is left in its group
    server.stop()
    assert not wait_gone(procs, 5)


@pytest.mark.skipif(not router_available(), reason="vllm-router is not installed")
def test_a_sigkilled_cluster_leaves_no_router(tmp_path):
    replica = FakeReplica("a").start()
    port = free_port()
    cluster, info = start_cluster(["--replica", replica.url, "--port", str(port)], tmp_path)
    try:
        assert info is not None, f"the cluster did not start (logs in {tmp_path})"
        assert httpx.get(info["router"] + "/health", timeout=5).status_code == 200
        router = psutil.Process(info["router_pid"])
        cluster.kill()
        cluster.wait(10)
        assert not wait_gone([router], 10), "the router outlived its cluster"
    finally:
        if cluster.poll() is None:
            os.killpg(cluster.pid, signal.SIGKILL)
        replica.stop()
