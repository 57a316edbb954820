"""Hardware and model shapes: public constants for the GPUs and Llama-3.1 models the simulator knows.

Model shapes are the ``config.json`` values Meta publishes for Llama-3.1 (nothing is downloaded). GPU numbers
are the vendor's datasheet peaks (dense BF16 tensor-core FLOP/s, HBM bandwidth, NVLink bandwidth per GPU)
and the total memory CUDA reports. The gap between datasheet peaks and what kernels achieve is carried by the
efficiency factors of `continuum_eval.sim.cost.costmodel`, not here. The host link (PCIe, what a KV-offloading
tier copies over) is the datasheet peak on H100 and A100, and the measured pinned-copy rate on H200.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

GiB = 1 << 30


@dataclass(frozen=True)
class ModelSpec:
    """A decoder-only transformer (Llama family: RMSNorm, RoPE, GQA, gated SiLU MLP, untied LM head)."""

    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    max_position: int
    head_dim: int = 0  # 0: hidden // heads
    dtype_bytes: int = 2  # BF16 weights, activations and KV cache
    tied_embeddings: bool = False

    @property
    def d(self) -> int:
        return self.head_dim or self.hidden // self.heads

    def layer_params(self) -> int:
        """Weights of one decoder layer: QKV, output projection, gate+up, down (norm weights are negligible)."""
        h, d = self.hidden, self.d
        return (h * (self.heads + 2 * self.kv_heads) * d + self.heads * d * h
                + 2 * h * self.intermediate + self.intermediate * h + 2 * h)

    def params(self) -> int:
        embed = self.vocab * self.hidden
        return self.layers * self.layer_params() + embed * (1 if self.tied_embeddings else 2) + self.hidden

    def weight_bytes(self) -> int:
        return self.params() * self.dtype_bytes

    def kv_bytes_per_token(self, tp: int = 1) -> int:
        """K and V of one token over all layers, on one of ``tp`` tensor-parallel GPUs."""
        return 2 * self.layers * max(1, self.kv_heads // tp) * self.d * self.dtype_bytes

    def to_dict(self) -> dict:
        return {**asdict(self), "params_b": round(self.params() / 1e9, 2)}


@dataclass(frozen=True)
class GPUSpec:
    name: str
    bf16_flops: float  # dense tensor-core peak, FLOP/s
    mem_bw: float  # HBM bandwidth, bytes/s
    mem_bytes: int  # total device memory as CUDA reports it
    link_bw: float  # NVLink bandwidth per GPU per direction, bytes/s
    # The host link a KV-offloading tier copies over (PCIe to pinned host memory): bytes/s each way, and the
    # fixed cost of one transfer. 0 where unknown.
    host_to_device_bw: float = 0.0
    device_to_host_bw: float = 0.0
    host_link_latency_s: float = 0.0

    def host_copy_s(self, nbytes: float, to_device: bool = True) -> float:
        """Seconds to move ``nbytes`` over the host link in one transfer (what offloading or reloading KV costs)."""
        bw = self.host_to_device_bw if to_device else self.device_to_host_bw
        if bw <= 0:
            raise ValueError(f"{self.name}: host-link bandwidth unknown")
        return self.host_link_latency_s + nbytes / bw

    def to_dict(self) -> dict:
        return asdict(self)


# Llama-3.1 (meta-llama/Llama-3.1-8B and -70B config.json): GQA with 8 KV heads, 128k context, 128,256 vocab.
LLAMA_3_1_8B = ModelSpec("llama-3.1-8b", layers=32, hidden=4096, heads=32, kv_heads=8, intermediate=14336,
                         vocab=128256, max_position=131072)
LLAMA_3_1_70B = ModelSpec("llama-3.1-70b", layers=80, hidden=8192, heads=64, kv_heads=8, intermediate=28672,
                          vocab=128256, max_position=131072)

# Host-link latency: one cudaMemcpyAsync's launch and DMA setup, about 10 us (an assumption of that order; no
# measurement here resolves it, and it only matters for copies far below a megabyte).
HOST_LINK_LATENCY_S = 10e-6
# One convention for every host link: what pinned copies achieve, not the datasheet peak. Measured on the H200's
# PCIe Gen5 x16 (55.3 GB/s host to device, 55.2 GB/s back; see H200 below): 86% of the 64 GB/s per-direction peak.
# GPUs on the same link take those rates; a GPU on another PCIe generation takes that share of its peak.
PCIE5_H2D, PCIE5_D2H = 55.3e9, 55.2e9
PINNED_COPY_SHARE = PCIE5_H2D / 64e9

# H100 SXM5 80 GB: 989 TFLOP/s dense BF16, 3.35 TB/s HBM3, NVLink 4 at 900 GB/s (450 GB/s each way).
# Host link: PCIe Gen5 x16 (64 GB/s each way at its peak), the H200's link: its measured pinned-copy rates.
H100 = GPUSpec("h100-sxm-80gb", bf16_flops=989e12, mem_bw=3.35e12, mem_bytes=int(79.19 * GiB), link_bw=450e9,
               host_to_device_bw=PCIE5_H2D, device_to_host_bw=PCIE5_D2H, host_link_latency_s=HOST_LINK_LATENCY_S)
# A100 SXM4 80 GB: 312 TFLOP/s dense BF16, 2.04 TB/s HBM2e, NVLink 3 at 600 GB/s (300 GB/s each way).
# Host link: PCIe Gen4 x16 (32 GB/s each way at its peak), at the share of the peak pinned copies reach on Gen5.
A100 = GPUSpec("a100-sxm-80gb", bf16_flops=312e12, mem_bw=2.039e12, mem_bytes=int(79.15 * GiB), link_bw=300e9,
               host_to_device_bw=PINNED_COPY_SHARE * 32e9, device_to_host_bw=PINNED_COPY_SHARE * 32e9,
               host_link_latency_s=HOST_LINK_LATENCY_S)
# H200 SXM 141 GB: the H100's die (989 TFLOP/s dense BF16, NVLink 4 at 450 GB/s each way) with 141 GB of HBM3e at
# 4.8 TB/s (NVIDIA's datasheet); CUDA reports 143,771 MiB. Host link (PCIe Gen5 x16): the pinned-memory copy
# rates measured on one H200 (1 GiB copies: 55.3 GB/s host to device, 55.2 GB/s device to host; 4,096
# scattered 16-token KV blocks gathered into pinned memory first: 55.1 GB/s), see
# eval/sim/fitted/h200-llama-3.1-8b-measured.json.
H200 = GPUSpec("h200-sxm-141gb", bf16_flops=989e12, mem_bw=4.8e12, mem_bytes=143771 * (1 << 20), link_bw=450e9,
               host_to_device_bw=PCIE5_H2D, device_to_host_bw=PCIE5_D2H, host_link_latency_s=HOST_LINK_LATENCY_S)

MODELS = {m.name: m for m in (LLAMA_3_1_8B, LLAMA_3_1_70B)}
GPUS = {"h100": H100, "a100": A100, "h200": H200}
