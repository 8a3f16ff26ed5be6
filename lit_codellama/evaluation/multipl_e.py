"""MultiPL-E (Cassano et al. 2023): HumanEval translated to other languages, for the paper's C++, Java, PHP,
TypeScript, C# and Bash. The program is prompt + completion + "\\n" + tests; stops come with each problem.

A language whose toolchain is not installed is skipped with a message saying how to install it; it is reported
under `skipped` and never counted as failures.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lit_codellama.evaluation.data import load_hub_rows, read_jsonl
from lit_codellama.evaluation.execution import LANGUAGES
from lit_codellama.evaluation.tasks import CodeProblem, evaluate_problems

log = logging.getLogger(__name__)

HUB_ID = "nuprl/MultiPL-E"
PAPER_LANGUAGES = ("cpp", "java", "php", "ts", "cs", "sh")


def _local_copy(language: str) -> str:
    return (f"save the rows of {HUB_ID} config humaneval-{language} (fields name, prompt, tests, stop_tokens) as JSONL "
            f"and pass its path (--data {language}=PATH on the command line, data={{'{language}': PATH}} in Python)")


def multipl_e_problems(language: str, data: str | Path | None = None, limit: int | None = None) -> list[CodeProblem]:
    if language not in PAPER_LANGUAGES:
        raise ValueError(f"unknown MultiPL-E language {language!r}; choose from {PAPER_LANGUAGES}")
    if data is None:
        rows = load_hub_rows(HUB_ID, f"humaneval-{language}", _local_copy(language))
    else:
        rows = read_jsonl(data, required=("name", "prompt", "tests", "stop_tokens"))
    problems = [
        CodeProblem(row["name"], row["prompt"], "\n" + row["tests"], language=language, stop=tuple(row["stop_tokens"]))
        for row in rows
    ]
    return problems[:limit]


def evaluate_multipl_e(
    model,
    tok,
    languages: tuple[str, ...] = PAPER_LANGUAGES,
    data: dict[str, str | Path] | None = None,
    limit: int | None = None,
    out_dir: str | Path | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """pass@k per language, their mean at the top level, and the languages skipped for want of a toolchain."""
    data = data or {}
    summary: dict[str, Any] = {"task": "multipl-e", "languages": {}, "skipped": {}}
    for language in languages:
        reason = LANGUAGES[language].missing_toolchain()
        if reason:
            log.warning("MultiPL-E %s skipped: %s", language, reason)
            summary["skipped"][language] = reason
            continue
        problems = multipl_e_problems(language, data.get(language), limit)
        language_dir = None if out_dir is None else Path(out_dir) / language
        summary["languages"][language] = evaluate_problems(f"multipl-e-{language}", problems, model, tok,
                                                           out_dir=language_dir, **kwargs)
    return {**mean_pass_at_k(summary["languages"]), **summary}


def mean_pass_at_k(per_language: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The unweighted mean over languages of each pass@k that all of them report."""
    if not per_language:
        return {}
    keys = set.intersection(*({k for k in s if k.startswith("pass@")} for s in per_language.values()))
    return {k: sum(s[k] for s in per_language.values()) / len(per_language) for k in sorted(keys)}
