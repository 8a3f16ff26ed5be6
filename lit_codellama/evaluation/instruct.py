"""HumanEval and MBPP for instruction-following models: the task asked as one chat turn, the code taken from the answer.

The evaluation package's problems, generation and sandbox scoring are reused as they are; only the prompt and the
completion differ. The prompt is `[INST] {task} [/INST]`; the completion scored is the code extracted from the
answer, placed after the task's program head (HumanEval: the original prompt, so that its imports and helper
functions exist; a full definition in the answer replaces the stub, a bare body continues it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from lit_codellama.chat import prompt_text
from lit_codellama.evaluation.tasks import CodeProblem, evaluate_problems

# [PYTHON] tags are what the self-instruct coder prompt asks for; Markdown fences are what chat models write.
CODE_BLOCK = re.compile(r"\[PYTHON\]\n?(.*?)(?:\[/PYTHON\]|\Z)|```[\w+-]*[^\S\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
HUMANEVAL_TASK = "Complete the following Python function. Answer with the whole function in a Python code block.\n\n```python\n{prompt}```"
MBPP_SHOT_END, MBPP_BEGIN = "[DONE]\n\n", "[BEGIN]\n"


def extract_code(answer: str) -> str:
    """The first `[PYTHON]` or fenced code block of an answer (to its end if unclosed), or the whole answer when it
    has none (models also answer with bare code)."""
    match = CODE_BLOCK.search(answer)
    if match is None:
        return answer
    return next(group for group in match.groups() if group is not None)


def humaneval_task(problem: CodeProblem) -> str:
    return HUMANEVAL_TASK.format(prompt=problem.prompt)


def mbpp_task(problem: CodeProblem) -> str:
    """The problem's own zero-shot text: the last task of the few-shot prompt, without its `[BEGIN]` cue."""
    last = problem.prompt.rsplit(MBPP_SHOT_END, 1)[-1]
    if not last.endswith(MBPP_BEGIN):
        raise ValueError(f"{problem.task_id}: prompt does not end with {MBPP_BEGIN!r}; not an MBPP few-shot prompt")
    return last.removesuffix(MBPP_BEGIN).strip()


TASKS: dict[str, Callable[[CodeProblem], str]] = {"humaneval": humaneval_task, "mbpp": mbpp_task}


def instruct_problems(task: str, problems: Sequence[CodeProblem]) -> list[CodeProblem]:
    """The problems with the task asked as one chat turn; generation ends at EOS, not at the completion stops."""
    if task not in TASKS:
        raise ValueError(f"no instruct prompt format for task {task!r}; available: {sorted(TASKS)}")
    return [
        replace(
            p,
            prompt=prompt_text(TASKS[task](p)),
            program_head=(p.prompt if p.program_head is None else p.program_head) + "\n",
            stop=(),
        )
        for p in problems
    ]


def evaluate_instruct(task: str, problems: Sequence[CodeProblem], model, tok, **kwargs: Any) -> dict[str, Any]:
    """pass@k of a chat model on `task` ("humaneval" or "mbpp") with the instruct prompt format: `evaluate_problems`
    with the problems of `instruct_problems` and the code extracted from each answer. With `out_dir`, the raw
    answers go to `answers.jsonl` beside the scored results. kwargs: options of `tasks.evaluate_problems`."""
    return evaluate_problems(task, instruct_problems(task, problems), model, tok, answer_to_code=extract_code,
                             extra={"prompt_format": "instruct"}, **kwargs)
