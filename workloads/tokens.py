"""Token counting for trace builders.

Builders take a plain ``count_tokens(text) -> int`` callable so that the trace
logic does not depend on any particular tokenizer: the command line passes the
embedded model's ``tokenizer.json``; tests can pass a cheap approximation.
Chat messages are counted as the embedded model renders them (ChatML), so the
token counts of a built trace match what that model would prefill.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping

__all__ = [
    "TokenCounter",
    "tokenizer_counter",
    "approx_counter",
    "render_message",
    "GENERATION_PROMPT",
    "END_OF_TURN",
]

TokenCounter = Callable[[str], int]

# ChatML, the template of the embedded SmolLM2 models.
GENERATION_PROMPT = "<|im_start|>assistant\n"
END_OF_TURN = "<|im_end|>"


def tokenizer_counter(path: str | Path) -> TokenCounter:
    """A counter backed by a Hugging Face ``tokenizer.json`` (no special tokens added)."""
    from tokenizers import Tokenizer  # local import: only builders that count real text need it

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"tokenizer file not found: {p}")
    tok = Tokenizer.from_file(str(p))

    @lru_cache(maxsize=8192)
    def count(text: str) -> int:
        return len(tok.encode(text, add_special_tokens=False).ids)

    return count


def approx_counter(text: str) -> int:
    """About one token per four characters; for tests and rough estimates only."""
    return max(1, (len(text) + 3) // 4) if text else 0


def render_message(msg: Mapping[str, Any]) -> str:
    """The ChatML text of one message (a missing content counts as empty)."""
    content = msg.get("content")
    if content is None:
        content = ""
    return f"<|im_start|>{msg['role']}\n{content}{END_OF_TURN}\n"
