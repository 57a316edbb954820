"""Does scheduling change answers? Turn-by-turn comparison of greedy outputs across policies.

Both agent benches decode greedily (temperature 0), so two servers that compute the same logits give the same
tokens. For each task, turn k of the baseline (``vllm``) and of another policy are compared while they were
asked the same question (equal prompt digests: the same messages). A turn is *identical* when its output ids
(the text where a server returns no ids) are equal, *differing* otherwise, with the index of the first
differing token. After a differing turn the conversations part (the answers are in the next prompts); a turn
whose prompt differs for another reason (a tool printed a time stamp, the agent stopped earlier) ends the
comparison of that task and is counted under ``prompt_diverged``.
"""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["compare_outputs", "format_determinism"]

BASELINE = "vllm"


def _first_diff(a: Sequence[Any], b: Sequence[Any]) -> int:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def _compare_task(task: str, base: list[dict[str, Any]], other: list[dict[str, Any]], out: dict[str, Any]) -> None:
    for k, (b, o) in enumerate(zip(base, other)):
        if b["prompt"] != o["prompt"]:
            out["prompt_diverged"] += 1
            return
        out["turns_compared"] += 1
        bx = b["ids"] if b.get("ids") is not None and o.get("ids") is not None else b.get("text", "")
        ox = o["ids"] if b.get("ids") is not None and o.get("ids") is not None else o.get("text", "")
        if bx == ox:
            out["turns_identical"] += 1
            continue
        out["turns_differing"] += 1
        out["differences"].append({"task": task, "turn": k, "first_diff_token": _first_diff(bx, ox),
                                   "baseline_tokens": len(bx), "other_tokens": len(ox)})
        return


def compare_outputs(results: Sequence[dict[str, Any]], baseline: str = BASELINE) -> list[dict[str, Any]]:
    """For each policy but the baseline: turns compared, identical, differing (with where), prompt divergences."""
    base = next((r for r in results if r.get("policy") == baseline), results[0] if results else None)
    if base is None:
        return []
    pairs = []
    for r in results:
        if r is base:
            continue
        out: dict[str, Any] = {"policy": r.get("policy"), "baseline": base.get("policy"), "turns_compared": 0,
                               "turns_identical": 0, "turns_differing": 0, "prompt_diverged": 0,
                               "differences": []}
        for task, turns in (base.get("outputs") or {}).items():
            _compare_task(task, turns, (r.get("outputs") or {}).get(task, []), out)
        pairs.append(out)
    return pairs


def format_determinism(pairs: Sequence[dict[str, Any]]) -> str:
    if not pairs:
        return ""
    lines = ["| policy vs baseline | turns compared | identical | differing | prompt diverged (not the model) |",
             "|---|---|---|---|---|"]
    for p in pairs:
        lines.append(f"| {p['policy']} vs {p['baseline']} | {p['turns_compared']} | {p['turns_identical']} "
                     f"| {p['turns_differing']} | {p['prompt_diverged']} |")
    for p in pairs:
        for d in p["differences"]:
            lines.append(f"- {p['policy']}: {d['task']} turn {d['turn']} differs from token {d['first_diff_token']}"
                         f" ({d['baseline_tokens']} vs {d['other_tokens']} tokens)")
    return "\n".join(lines)
