"""HumanEval and MBPP for instruction-following models: the task asked as one chat turn, the code taken from the answer.

The evaluation package's problems, generation and sandbox scoring are reused as they are; only the prompt and the
completion differ. The prompt is `[INST] {task} [/INST]`; the completion scored is the code extracted from the
answer, placed after the task's program head (HumanEval: the original prompt, so that its imports and helper
functions exist; a full definition in the answer replaces the stub, a bare body continues it).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from lit_codellama.evaluation.data import write_jsonl
from lit_codellama.evaluation.sandbox import Sandbox
from lit_codellama.evaluation.tasks import CodeProblem, Sample, generate_samples, score_samples
from lit_codellama.instruct.chat import prompt_text

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


def evaluate_instruct(
    task: str,
    problems: Sequence[CodeProblem],
    model,
    tok,
    n_samples: int = 1,
    temperature: float = 0.0,
    top_p: float = 0.95,
    max_new_tokens: int = 512,
    batch_size: int = 8,
    seed: int = 0,
    sandbox: Sandbox | None = None,
    ks: Sequence[int] = (1, 10, 100),
    timeout_s: float | None = None,
    workers: int | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """pass@k of a chat model on `task` ("humaneval" or "mbpp") with the instruct prompt format: `evaluate_problems`
    with the problems of `instruct_problems` and the code extracted from each answer. With `out_dir`, the raw
    answers go to `answers.jsonl` beside the scored results."""
    sandbox = sandbox or Sandbox()  # refuse before spending time on generation
    chat_problems = instruct_problems(task, problems)
    settings = dict(n_samples=n_samples, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed)
    start = time.monotonic()
    answers = generate_samples(model, tok, chat_problems, batch_size=batch_size, **settings)
    extra = {"prompt_format": "instruct", "generation": settings, "generation_s": round(time.monotonic() - start, 3)}
    samples = [Sample(a.task_id, extract_code(a.completion)) for a in answers]
    summary = score_samples(task, chat_problems, samples, sandbox, ks, timeout_s, workers, progress, out_dir, extra)
    if out_dir is not None:
        write_jsonl(Path(out_dir) / "answers.jsonl", [{"task_id": a.task_id, "answer": a.completion} for a in answers])
    return summary
