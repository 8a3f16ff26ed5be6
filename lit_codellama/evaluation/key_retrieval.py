"""The synthetic key-retrieval task of the paper (§3.3, App. G): find a value defined far back in a long file.

A function `def my_function() -> int: return <key>` is placed at a relative position (0, 0.2, 0.4 ...) of a long
stretch of real code, and the prompt ends with `assert my_function() == `; the answer is right when the greedy
completion starts with the key. The paper's filler is CodeContests code; ours is local Python source (by default
the standard library's), cut at line boundaries to the target length in tokens.
"""

from __future__ import annotations

import random
import re
import sysconfig
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lit_codellama.evaluation.data import EvalInputError
from lit_codellama.evaluation.tasks import write_results

QUESTION = "\nassert my_function() == "
_ANSWER = re.compile(r"\s*(-?\d+)")


@dataclass(frozen=True)
class KeyPrompt:
    length: int  # target length in tokens
    position: float
    key: int
    prompt: str
    n_tokens: int  # actual length in tokens


def default_filler_texts() -> list[str]:
    """The standard library's Python files, in a fixed order."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return [p.read_text(encoding="utf-8", errors="replace") for p in sorted(stdlib.glob("*.py"))]


def _function(key: int) -> str:
    return f"def my_function() -> int:\n    return {key}\n\n\n"


def make_prompt(tok, lines: Sequence[str], length: int, position: float, rng: random.Random) -> KeyPrompt:
    """A prompt of at most `length` tokens: filler lines from a random start, the function at `position`."""
    key = rng.randrange(1_000, 100_000)
    budget = length - len(tok.encode(_function(key) + QUESTION, bos=True))
    start = rng.randrange(len(lines))
    filler: list[str] = []
    used = 0
    for i in range(start, start + len(lines)):
        line = lines[i % len(lines)]
        cost = len(tok.encode(line))
        if used + cost > budget:
            break
        filler.append(line)
        used += cost
    while True:  # lines encoded one by one can take fewer tokens than together: trim until the whole fits
        cut = round(position * len(filler))
        prompt = "".join(filler[:cut]) + _function(key) + "".join(filler[cut:]) + QUESTION
        n_tokens = len(tok.encode(prompt, bos=True))
        if n_tokens <= length or not filler:
            return KeyPrompt(length, position, key, prompt, n_tokens)
        filler.pop()


def key_retrieval_prompts(
    tok, filler_texts: Sequence[str], lengths: Sequence[int], positions: Sequence[float], n_per_cell: int, seed: int = 0
) -> list[KeyPrompt]:
    lines = [line for text in filler_texts for line in text.splitlines(keepends=True) if line.strip()]
    if not lines:
        raise EvalInputError("key retrieval needs filler code: the filler texts are empty")
    rng = random.Random(seed)
    return [make_prompt(tok, lines, n, p, rng) for n in lengths for p in positions for _ in range(n_per_cell)]


def answer(completion: str) -> int | None:
    match = _ANSWER.match(completion)
    return int(match.group(1)) if match else None


def key_retrieval_accuracy(
    model,
    tok,
    lengths: Sequence[int],
    positions: Sequence[float] = (0.0, 0.2, 0.4),
    n_per_cell: int = 16,
    filler_texts: Sequence[str] | None = None,
    seed: int = 0,
    batch_size: int = 1,
    out_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Greedy accuracy per (length, position) cell and overall; with `out_dir`, one JSONL row per prompt."""
    from lit_codellama.generate import SamplingConfig, complete

    prompts = key_retrieval_prompts(tok, filler_texts or default_filler_texts(), lengths, positions, n_per_cell, seed)
    texts = [p.prompt for p in prompts]
    completions = complete(model, tok, texts, SamplingConfig(max_new_tokens=8), stop=("\n",), batch_size=batch_size)
    records = [{**{k: v for k, v in asdict(p).items() if k != "prompt"}, "completion": c, "correct": answer(c) == p.key}
               for p, c in zip(prompts, completions, strict=True)]
    cells = []
    for n in lengths:
        for position in positions:
            cell = [r for r in records if r["length"] == n and r["position"] == position]
            cells.append({"length": n, "position": position, "accuracy": sum(r["correct"] for r in cell) / len(cell),
                          "n": len(cell), "mean_tokens": sum(r["n_tokens"] for r in cell) / len(cell)})
    summary = {"task": "key-retrieval", "accuracy": sum(r["correct"] for r in records) / len(records),
               "n": len(records), "rope_theta": model.config.rope_theta, "rope_scaling": model.config.rope_scaling,
               "cells": cells}
    if out_dir is not None:
        write_results(out_dir, records, summary)
    return summary
