"""Hosts made on this machine for the cluster's fault tests: each replica behind a network link of its own.

With root and iproute2, a host is a network namespace joined to this one by a veth pair: its own address
(``10.N.i.2``; this side is ``10.N.i.1``), its own loopback and ports, so every replica listens on the same port as
on separate machines. A partition takes the host's end of the link down: packets to and from it are dropped, so
connections hang (as across a real partition) rather than being refused, and they resume when the link comes back.

Without namespaces a host is a loopback address of its own (``127.0.0.i``), and a partition stops (SIGSTOP) the
replica's processes until it heals (SIGCONT): the kernel still accepts connections, nothing answers them. That is
a stand-in for a partition, not one, and the tests say which kind ran.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Sequence

from continuum.serve.launch import ServerProcess, free_port

REPLICA_PORT = 8000  # every namespace host has its own ports


def namespaces_available() -> bool:
    """Root, `ip`, and a namespace can actually be made (a container may forbid it)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    name = f"cprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode == 0
    if made:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return made


def _ip(*args: str, ns: str | None = None) -> None:
    cmd = ["ip", *(["netns", "exec", ns, "ip"] if ns else []), *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip()}")


class NamespaceHost:
    """Host ``index`` in a network namespace; ``close()`` removes the namespace and its link."""

    kind = "network namespace"

    def __init__(self, index: int) -> None:
        tag = f"{os.getpid() % 100000}{chr(ord('a') + index)}"
        self.ns, self.link, self.peer = f"cfault{tag}", f"cf{tag}", f"cf{tag}p"
        subnet = f"10.{200 + os.getpid() % 50}.{index}"
        self.address, self.gateway = f"{subnet}.2", f"{subnet}.1"
        self.port = REPLICA_PORT
        _ip("netns", "add", self.ns)
        _ip("link", "add", self.link, "type", "veth", "peer", "name", self.peer)
        _ip("link", "set", self.peer, "netns", self.ns)
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.link)
        _ip("link", "set", self.link, "up")
        _ip("addr", "add", f"{self.address}/24", "dev", self.peer, ns=self.ns)
        _ip("link", "set", "lo", "up", ns=self.ns)
        _ip("link", "set", self.peer, "up", ns=self.ns)

    def command(self, cmd: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *cmd]

    def partition(self, server: ServerProcess) -> None:
        _ip("link", "set", self.peer, "down", ns=self.ns)

    def heal(self, server: ServerProcess) -> None:
        _ip("link", "set", self.peer, "up", ns=self.ns)

    def close(self) -> None:
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)  # takes the veth pair with it
        subprocess.run(["ip", "link", "del", self.link], capture_output=True)


class LoopbackHost:
    """Host ``index`` on a loopback address of its own; a partition stops its replica (see the module)."""

    kind = "loopback address (partition = SIGSTOP)"

    def __init__(self, index: int) -> None:
        self.address, self.port = f"127.0.0.{10 + index}", free_port()

    def command(self, cmd: Sequence[str]) -> list[str]:
        return list(cmd)

    def partition(self, server: ServerProcess) -> None:
        os.killpg(server.proc.pid, signal.SIGSTOP)

    def heal(self, server: ServerProcess) -> None:
        os.killpg(server.proc.pid, signal.SIGCONT)

    def close(self) -> None:
        pass


Host = NamespaceHost | LoopbackHost


def make_host(index: int) -> Host:
    return NamespaceHost(index) if namespaces_available() else LoopbackHost(index)


class HostReplica(ServerProcess):
    """`continuum serve MODEL ARGS` on ``host``, listening on the host's address, its engine on a core of its own
    where there are enough (vLLM's CPU engine binds its threads to the same first core otherwise, and three
    engines spinning on one core starve each other for tens of seconds: slow turns that no fault caused)."""

    def __init__(self, host: Host, model: str, args: Sequence[str], log_path: Path, index: int = 0) -> None:
        super().__init__(model, [*args, "--host", host.address], port=host.port, log_path=log_path)
        self.host = host
        self.base_url = f"http://{host.address}:{host.port}"
        self.cmd = host.command(self.cmd)
        # vLLM finds its own address by routing to a public one, which a host without a default route lacks.
        self.env = {**os.environ, "VLLM_HOST_IP": host.address,
                    "VLLM_CPU_OMP_THREADS_BIND": str(index % (os.cpu_count() or 1))}

    def kill(self) -> None:
        """The host dies: its whole process group at once, nothing cleaned up."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
