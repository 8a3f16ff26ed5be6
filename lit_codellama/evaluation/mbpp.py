"""MBPP (Austin et al. 2021): the 500 test problems (task ids 11-510), 3-shot with tasks 2, 3 and 4 in the paper's
format, generation stopped at `[DONE]`; the program is the completion followed by the problem's asserts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lit_codellama.evaluation.data import EvalInputError, load_hub_rows, read_jsonl
from lit_codellama.evaluation.tasks import CodeProblem, evaluate_problems

HUB_ID = "google-research-datasets/mbpp"
TEST_IDS = range(11, 511)
SHOT_IDS = (2, 3, 4)
STOP = ("[DONE]",)
LOCAL_COPY = (
    "download mbpp.jsonl (https://github.com/google-research/google-research/raw/master/mbpp/mbpp.jsonl) and pass "
    "its path (--data PATH on the command line, data=PATH in Python)"
)


def _task_text(row: dict[str, Any]) -> str:
    tests = "\n".join(row["test_list"][:3])
    return (f"You are an expert Python programmer, and here is your task: {row['text']} "
            f"Your code should pass these tests:\n\n{tests}\n[BEGIN]\n")


def few_shot_prompt(shots: list[dict[str, Any]], row: dict[str, Any]) -> str:
    solved = [_task_text(shot) + shot["code"] + "\n[DONE]" for shot in shots]
    return "\n\n".join([*solved, _task_text(row)])


def _rows(data: str | Path | None) -> dict[int, dict[str, Any]]:
    if data is None:
        rows = load_hub_rows(HUB_ID, "full", LOCAL_COPY)
    else:
        rows = read_jsonl(data, required=("task_id", "text", "code", "test_list"))
    return {int(row["task_id"]): row for row in rows}


def mbpp_problems(data: str | Path | None = None, limit: int | None = None) -> list[CodeProblem]:
    """Problems from a local mbpp.jsonl (`data`) or the hub; the shots 2, 3, 4 must be present."""
    rows = _rows(data)
    missing = [i for i in SHOT_IDS if i not in rows]
    if missing:
        raise EvalInputError(f"MBPP data {data or HUB_ID} lacks the few-shot tasks {missing}; use the full mbpp.jsonl")
    shots = [rows[i] for i in SHOT_IDS]
    problems = []
    for task_id in (i for i in TEST_IDS if i in rows):
        row = rows[task_id]
        tests = "\n" + (row.get("test_setup_code") or "") + "\n" + "\n".join(row["test_list"]) + "\n"
        problems.append(CodeProblem(
            f"Mbpp/{task_id}", few_shot_prompt(shots, row), tests, program_head="", stop=STOP, reference=row["code"],
        ))
    if not problems:
        ids = f"{TEST_IDS.start}-{TEST_IDS.stop - 1}"
        raise EvalInputError(f"MBPP data {data or HUB_ID} has none of the test tasks (ids {ids})")
    return problems[:limit]


def evaluate_mbpp(
    model, tok, data: str | Path | None = None, limit: int | None = None, **kwargs: Any
) -> dict[str, Any]:
    """pass@k of `model` on MBPP (3-shot). kwargs: sampling, scoring and output options of `tasks.evaluate_problems`."""
    return evaluate_problems("mbpp", mbpp_problems(data, limit), model, tok, **kwargs)
