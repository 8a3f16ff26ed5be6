"""The synthetic key-retrieval task of the paper (§3.3, App. G): find a value defined far back in a long file.

A definition holding a key is placed at a relative position (0, 0.2, 0.4 ...) of a long stretch of real code, and
the prompt ends with a question whose answer is the key. Two templates:
- `paper`: `def my_function() -> int: return <key>`, asked as `assert my_function() == ` (two hops: find the
  function by name, then its return value);
- `one_hop`: `my_key = <key>`, asked by repeating `my_key = ` (a copy of what followed the same text: what the
  induction heads of small models can show).
Two scorings: `key_retrieval_accuracy`, the paper's (the greedy completion starts with the key), and
`key_retrieval_ranking`, the key's rank and log-probability among k candidates of the same number of digits
(chance: top-1 1/k, log-share -ln k), which stays informative below the greedy floor. The paper's filler is
CodeContests code; ours is local Python source (by default the standard library's), cut at line boundaries to
the target length in tokens.
"""

from __future__ import annotations

import math
import random
import re
import sysconfig
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from lit_codellama.evaluation.data import EvalInputError
from lit_codellama.evaluation.likelihood import continuation, target_nll
from lit_codellama.evaluation.tasks import write_results

TEMPLATES = {  # name -> (definition of the key, the question that ends the prompt)
    "paper": ("def my_function() -> int:\n    return {key}\n\n\n", "\nassert my_function() == "),
    "one_hop": ("my_key = {key}\n\n", "\nmy_key = "),
}
QUESTION = TEMPLATES["paper"][1]
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


def make_prompt(
    tok, lines: Sequence[str], length: int, position: float, rng: random.Random, template: str = "paper"
) -> KeyPrompt:
    """A prompt of at most `length` tokens: filler lines from a random start, the key's definition at `position`."""
    if template not in TEMPLATES:
        raise EvalInputError(f"unknown key-retrieval template {template!r}; choose from {sorted(TEMPLATES)}")
    definition, question = TEMPLATES[template]
    key = rng.randrange(1_000, 100_000)
    budget = length - len(tok.encode(definition.format(key=key) + question, bos=True))
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
        prompt = "".join(filler[:cut]) + definition.format(key=key) + "".join(filler[cut:]) + question
        n_tokens = len(tok.encode(prompt, bos=True))
        if n_tokens <= length or not filler:
            return KeyPrompt(length, position, key, prompt, n_tokens)
        filler.pop()


def key_retrieval_prompts(
    tok,
    filler_texts: Sequence[str],
    lengths: Sequence[int],
    positions: Sequence[float],
    n_per_cell: int,
    seed: int = 0,
    template: str = "paper",
) -> list[KeyPrompt]:
    lines = [line for text in filler_texts for line in text.splitlines(keepends=True) if line.strip()]
    if not lines:
        raise EvalInputError("key retrieval needs filler code: the filler texts are empty")
    rng = random.Random(seed)
    return [make_prompt(tok, lines, n, p, rng, template) for n in lengths for p in positions for _ in range(n_per_cell)]


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
    template: str = "paper",
) -> dict[str, Any]:
    """Greedy accuracy per (length, position) cell and overall; with `out_dir`, one JSONL row per prompt."""
    from lit_codellama.generate import SamplingConfig, complete

    prompts = key_retrieval_prompts(tok, filler_texts or default_filler_texts(), lengths, positions, n_per_cell, seed,
                                    template)
    texts = [p.prompt for p in prompts]
    completions = complete(model, tok, texts, SamplingConfig(max_new_tokens=8), stop=("\n",), batch_size=batch_size)
    records = [_record(p, completion=c, correct=answer(c) == p.key) for p, c in zip(prompts, completions, strict=True)]
    cells = [{"length": n, "position": position, "accuracy": _mean(cell, "correct"), "n": len(cell),
              "mean_tokens": _mean(cell, "n_tokens")} for n, position, cell in _cells(records, lengths, positions)]
    summary = {"task": "key-retrieval", "accuracy": _mean(records, "correct"),
               "n": len(records), "rope_theta": model.config.rope_theta, "rope_scaling": model.config.rope_scaling,
               "cells": cells}
    if out_dir is not None:
        write_results(out_dir, records, summary)
    return summary


def distractors(key: int, k: int, rng: random.Random) -> list[int]:
    """k - 1 values other than `key` with its number of digits (so every candidate has a similar token count)."""
    digits = len(str(key))
    low, high = 10 ** (digits - 1), 10**digits
    if high - low < k:
        raise EvalInputError(f"a {digits}-digit key has fewer than {k} candidates")
    values: set[int] = set()
    while len(values) < k - 1:
        value = rng.randrange(low, high)
        if value != key:
            values.add(value)
    return sorted(values)


def rank_candidates(nll: Sequence[float]) -> tuple[float, float]:
    """(top-1, log-share) of candidate 0, the true key, from every candidate's NLL: top-1 is 1 if it is strictly the
    most likely, 1/m if it ties with m - 1 others for the top (random tie-breaking), else 0; log-share is its
    log-probability among the candidates, log(p_0 / sum p_i)."""
    values = torch.tensor(nll, dtype=torch.float64)
    best = values.min()
    top1 = 1.0 / int((values == best).sum()) if values[0] == best else 0.0
    return top1, float(-values[0] - torch.logsumexp(-values, dim=0))


def key_retrieval_ranking(
    model,
    tok,
    lengths: Sequence[int],
    positions: Sequence[float] = (0.0, 0.2, 0.4),
    n_per_cell: int = 16,
    k: int = 10,
    filler_texts: Sequence[str] | None = None,
    seed: int = 0,
    batch_size: int = 8,
    template: str = "one_hop",
    out_dir: str | Path | None = None,
) -> dict[str, Any]:
    """The true key's rank among k candidates, each scored by the model's log-probability of it after the prompt.

    Per (length, position) cell: `top1`, the share of prompts whose key is the most likely candidate (chance 1/k),
    and `nats_above_chance`, the mean log-share of the key plus ln k (0 at chance, ln k for certainty).
    """
    prompts = key_retrieval_prompts(tok, filler_texts or default_filler_texts(), lengths, positions, n_per_cell, seed,
                                    template)
    rng = random.Random(f"{seed}:candidates")
    candidates = [[p.key, *distractors(p.key, k, rng)] for p in prompts]
    sequences = []
    for p, values in zip(prompts, candidates, strict=True):
        context = tok.encode(p.prompt, bos=True)
        sequences += [continuation(context, tok.encode(p.prompt + str(v), bos=True)) for v in values]
    nll = [total for total, _ in target_nll(model, sequences, batch_size)]
    records = []
    for i, (p, values) in enumerate(zip(prompts, candidates, strict=True)):
        top1, log_share = rank_candidates(nll[i * k : (i + 1) * k])
        records.append(_record(p, candidates=values, top1=top1, log_share=log_share))
    cells = [{"length": n, "position": position, "n": len(cell), "top1": _mean(cell, "top1"),
              "nats_above_chance": _mean(cell, "log_share") + math.log(k)}
             for n, position, cell in _cells(records, lengths, positions)]
    summary = {"task": f"key-retrieval-ranking-{template}", "k": k, "n": len(records),
               "top1": _mean(records, "top1"), "rope_theta": model.config.rope_theta,
               "rope_scaling": model.config.rope_scaling, "cells": cells}
    if out_dir is not None:
        write_results(out_dir, records, summary)
    return summary


def _record(prompt: KeyPrompt, **fields: Any) -> dict[str, Any]:
    """A results.jsonl row: the prompt's settings (not its text) and what was measured on it."""
    return {**{k: v for k, v in asdict(prompt).items() if k != "prompt"}, **fields}


def _cells(records: list[dict[str, Any]], lengths: Sequence[int], positions: Sequence[float]):
    """(length, position, records) of each cell of the grid, in grid order."""
    for n in lengths:
        for position in positions:
            yield n, position, [r for r in records if r["length"] == n and r["position"] == position]


def _mean(records: list[dict[str, Any]], field: str) -> float:
    return sum(r[field] for r in records) / len(records)
