"""A stand-in for the worker side of vLLM's host KV tier: it completes the OffloadingConnector's transfer jobs
in simulated time, over the profile's host link.

With ``--kv-offloading-size`` vLLM splits the tier in two. The scheduler side (``OffloadingConnectorScheduler``
and its ``CPUOffloadingManager``: lookups, CPU allocation and eviction, which blocks to store and load) runs in
the simulated scheduler as vLLM's own code. The worker side copies KV between GPU and pinned host memory; there
is no GPU here, so this module stands in for it: it takes each step's ``OffloadingConnectorMetadata`` and
reports the jobs back, done, at the virtual time the copies would end. vLLM 0.32's rules (paths under vllm/):

- Stores built in step t's metadata are queued after t's forward pass and submitted at the start of step t+1
  (distributed/kv_transfer/kv_connector/v1/offloading/worker.py:259-271, 236-240); the device-to-host copy
  starts when t's forward pass ends.
- Loads of step t are submitted with t's forward launch (worker.py:246-257) on a stream ordered after the
  compute: the host-to-device copy starts when t's forward pass ends (v1/kv_offload/cpu/gpu_worker.py:255-260).
- Each direction is one FIFO queue (cpu/gpu_worker.py:665-670, 706-728): a copy waits for the one before it.
- ``jobs_to_flush`` (stores whose GPU blocks this step reallocates, or a preempted request's) are submitted
  and waited on before the forward pass (worker.py:219-244): the step stalls until they are done.
- Completions are polled at the end of every step, steps without a forward pass included (worker.py:273-308),
  and reported as ``kv_connector_worker_meta = OffloadingWorkerMetadata(completed_jobs={job: 1})``
  (offloading/common.py:75-104), plus ``finished_recving`` for loads. The scheduler side completes a job when
  its count reaches the world size (offloading/scheduler.py:1910-1986); only ``finished_recving`` releases a
  request from WAITING_FOR_REMOTE_KVS (v1/core/sched/scheduler.py:3209-3231), into the next ``schedule()``.
- A job moves every GPU block of its spec (``src_spec`` of a store, ``dst_spec`` of a load). Tensor-parallel
  ranks copy their own shards over their own links at once: a job lasts ``latency + blocks x rank bytes /
  bandwidth`` (`continuum_eval.sim.cost.specs.GPUSpec.host_copy_s`); the bytes reported are all ranks'.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vllm.distributed.kv_transfer.kv_connector.v1.offloading.common import OffloadingWorkerMetadata
from vllm.v1.outputs import KVConnectorOutput

from continuum_eval.sim.cost.profiles import Profile
from continuum_eval.sim.cost.specs import GPUSpec


@dataclass(frozen=True)
class HostLink:
    """One engine's host link, and the real size of its KV blocks."""

    gpu: GPUSpec
    block_bytes: int  # one KV block, all layers, K and V, summed over tensor-parallel ranks
    rank_block_bytes: int  # the share of one rank, which crosses that rank's own link

    @classmethod
    def of(cls, profile: Profile) -> "HostLink":
        """From a GPU profile's model, GPU and tensor parallelism; a fitted profile has no host link."""
        cost = profile.cost
        model, gpu, tp = getattr(cost, "model", None), getattr(cost, "gpu", None), getattr(cost, "tp", 1)
        if model is None or gpu is None or gpu.host_to_device_bw <= 0 or gpu.device_to_host_bw <= 0:
            raise ValueError(f"profile {profile.name!r} has no host link: a host KV tier needs a GPU profile")
        rank = profile.block_size * model.kv_bytes_per_token(tp)
        return cls(gpu, rank * tp, rank)

    def copy_s(self, blocks: int, to_device: bool) -> float:
        """Seconds one job of ``blocks`` blocks holds its queue: every rank copies its share at once."""
        return self.gpu.host_copy_s(blocks * self.rank_block_bytes, to_device)


@dataclass
class Queue:
    """One direction of the link: FIFO, one copy at a time."""

    free_at: float = 0.0
    busy_s: float = 0.0
    jobs: int = 0
    blocks: int = 0

    def add(self, start: float, seconds: float, blocks: int) -> float:
        begin = max(start, self.free_at)
        self.free_at = begin + seconds
        self.busy_s += seconds
        self.jobs += 1
        self.blocks += blocks
        return self.free_at


@dataclass
class TransferWorker:
    """Completes one engine's store and load jobs in virtual time (see the module docstring)."""

    link: HostLink
    block_size: int
    stores: Queue = field(default_factory=Queue)
    loads: Queue = field(default_factory=Queue)
    due: dict[int, tuple[float, str | None]] = field(default_factory=dict)  # job -> (done at, req id if a load)
    flush_stall_s: float = 0.0
    flushes: int = 0

    def begin_step(self, meta: Any, now: float) -> float:
        """Before the forward pass at ``now``: submit this step's flushed stores; the seconds the step waits
        for every flushed store to be done."""
        flush = getattr(meta, "jobs_to_flush", None)
        if not flush:
            return 0.0
        for jid in flush:
            job = meta.store_jobs.get(jid)
            if job is not None and jid not in self.due:
                self._store(jid, job, now)
        done = max((self.due[j][0] for j in flush if j in self.due), default=now)
        stall = max(0.0, done - now)
        self.flushes += 1
        self.flush_stall_s += stall
        return stall

    def end_step(self, meta: Any, now: float, start: float | None = None) -> KVConnectorOutput | None:
        """After the forward pass ends at ``now``: this step's copies start (at ``start``, default ``now``); what
        is done by ``now`` is reported."""
        start = now if start is None else start
        if meta is not None:
            for jid, job in meta.store_jobs.items():
                if jid not in self.due:
                    self._store(jid, job, start)
            for jid, job in meta.load_jobs.items():
                n = len(job.dst_spec.block_ids)
                self.due[jid] = (self.loads.add(start, self.link.copy_s(n, True), n), job.req_id)
        return self.collect(now)

    def _store(self, jid: int, job: Any, now: float) -> None:
        n = len(job.src_spec.block_ids)
        self.due[jid] = (self.stores.add(now, self.link.copy_s(n, False), n), None)

    def collect(self, now: float) -> KVConnectorOutput | None:
        """The jobs done by ``now``, as the worker's connector output; None when there are none."""
        done = [j for j, (t, _) in self.due.items() if t <= now]
        if not done:
            return None
        recv = {req for j in done if (req := self.due.pop(j)[1]) is not None}
        return KVConnectorOutput(finished_recving=recv or None,
                                 kv_connector_worker_meta=OffloadingWorkerMetadata(
                                     completed_jobs={j: 1 for j in done}))

    def next_done(self) -> float | None:
        """When the next pending job is done; None when none is pending."""
        return min((d for d, _ in self.due.values()), default=None)

    def stats(self) -> dict[str, float | int]:
        """PCIe traffic of the run so far (bytes of all ranks; busy seconds per direction)."""
        b = self.link.block_bytes
        return {"stored_bytes": self.stores.blocks * b, "loaded_bytes": self.loads.blocks * b,
                "store_busy_s": self.stores.busy_s, "load_busy_s": self.loads.busy_s, "stores": self.stores.jobs,
                "loads": self.loads.jobs, "cpu_hit_tokens": self.loads.blocks * self.block_size,
                "flushes": self.flushes, "flush_stall_s": self.flush_stall_s}
