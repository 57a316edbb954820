"""A server that outlives whoever started it is a leak: `python -m continuum.serve.tether PARENT GROUP [GRACE_S]`.

`continuum.serve.launch` starts one tether beside every server it starts (replicas, the router, a bench's
servers). The tether watches the parent process; when the parent dies without stopping its server (SIGKILL, a
timeout's kill, a crash), it ends the server's whole process group, vLLM's engine-core process included, and any
descendant that left the group: SIGTERM, then SIGKILL after ``GRACE_S``. It exits by itself once the group is gone.

Why not ``prctl(PR_SET_PDEATHSIG)`` on the server: that signal fires when the *thread* that forked the child
exits, not the process, and servers are started from worker threads (replicas start in parallel; the tests'
shared server starts in a background thread), which would kill them at once. Why not a wrapper process around
the server: callers use the server's pid (its children, its priority); a sibling keeps it the server's own. The
tether is in a session of its own, so the signals it sends to the group never reach itself.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import psutil

POLL_S = 0.2  # how soon a dead parent is noticed; a poll is two system calls
DEFAULT_GRACE_S = 5.0  # vLLM shuts its engine down on SIGTERM within a few seconds


def group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process reuses the id: not ours any more
        return False
    return True


def members(group: int) -> list[psutil.Process]:
    """The group's processes and every descendant of its leader (a descendant may have made a group of its own)."""
    found: dict[int, psutil.Process] = {}
    try:
        leader = psutil.Process(group)
        found.update({p.pid: p for p in [leader, *leader.children(recursive=True)]})
    except psutil.Error:
        pass
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == group:
                found.setdefault(p.pid, p)
        except (OSError, psutil.Error):
            continue
    found.pop(os.getpid(), None)
    return list(found.values())


def end_group(group: int, grace_s: float) -> None:
    """SIGTERM to all of them, SIGKILL to those still there after ``grace_s``."""
    procs = members(group)
    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            continue
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(alive, timeout=2.0)


def watch(parent: int, group: int, grace_s: float = DEFAULT_GRACE_S) -> int:
    """Until the group is gone (0) or the parent died and the group was ended (1)."""
    while group_alive(group):
        if os.getppid() != parent:  # orphaned: our parent died, so the server's parent did too
            end_group(group, grace_s)
            return 1
        time.sleep(POLL_S)
    return 0


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the parent is the parent's to act on
    parent, group = int(argv[0]), int(argv[1])
    grace_s = float(argv[2]) if len(argv) > 2 else DEFAULT_GRACE_S
    return watch(parent, group, grace_s)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
