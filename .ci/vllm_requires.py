"""The installed vLLM wheel's requirements, one a line, less its GPU kernels: for `make test-vllm`.

vLLM's CUDA wheel pins GPU kernel packages that the scheduler never imports, and some releases pin one the
package index does not serve (0.34.0: flashinfer-python==0.7.3). The contract environment installs the wheel
without dependencies, then what this prints. Markers are evaluated here, for this interpreter and no extra.
"""

from __future__ import annotations

import re
from importlib.metadata import requires

from packaging.requirements import Requirement

# Kernels, video decoders and loaders that only a model on a GPU imports; torch's audio/vision companions, which
# transformers imports only when present.
GPU_ONLY = {
    "apache-tvm-ffi", "fastsafetensors", "flashinfer-python", "humming-kernels", "instanttensor",
    "nvidia-cudnn-frontend", "nvidia-cutlass-dsl", "nvtx", "pynvvideocodec", "quack-kernels", "tilelang",
    "tokenspeed-mla", "torchaudio", "torchcodec", "torchvision",
}


def wanted(line: str) -> str | None:
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        return None
    if re.sub(r"[-_.]+", "-", req.name).lower() in GPU_ONLY:
        return None
    req.marker = None
    return str(req)


if __name__ == "__main__":
    for line in requires("vllm") or []:
        if (req := wanted(line)) is not None:
            print(req)
