"""Self-instruct with execution feedback (Code Llama §2.5): questions, tests and solutions written by models, kept
only when a solution passes the tests in the sandbox.

    1. questions   the generator continues a numbered list of interview-style programming questions
    2. dedup       exact (normalised text) and near (MinHash, lit_codellama.data.dedup) duplicates removed
    3. tests       the coder writes unit tests (asserts between [TESTS] tags) for each question
    4. solutions   the coder writes N solutions per question (between [PYTHON] tags), shown one test
    5. filter      the tests run against the solutions in the sandbox; the first passing one is kept

Each stage writes a JSONL file in the output directory and is skipped when its file is there, so an interrupted
run resumes where it stopped. `instruct.jsonl` is an instruct dataset (lit_codellama.instruct.dataset) with the
question, tests and solution kept beside the dialog; `report.json` holds the yield of every stage.

    python -m lit_codellama self-instruct --generator CKPT --coder CKPT --out DIR
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from lit_codellama.chat import TAGS, Message, encode_prompt
from lit_codellama.checkpoint import load_for_inference
from lit_codellama.data.dedup import Signer, first_occurrences, near_duplicate_mask
from lit_codellama.data.sources import sha256
from lit_codellama.errors import LitCodeLlamaError
from lit_codellama.jsonl import read_jsonl, write_jsonl
from lit_codellama.evaluation.execution import run_programs
from lit_codellama.evaluation.instruct import extract_code
from lit_codellama.evaluation.sandbox import Limits, Sandbox
from lit_codellama.generate import SamplingConfig, generate
from lit_codellama.model import Llama
from lit_codellama.tokenizer import Tokenizer

# The three prompts follow the paper's (its appendix, "self-instruct"): a list the generator continues, and one
# worked example each for tests and solutions.
QUESTIONS_ASK = (
    "Write 50 programming interview questions of easy and medium complexity. Provide questions on a diverse range "
    "of subjects, and make sure no two questions are alike. Make sure the problems can be solved with a single "
    "standalone Python function using standard libraries."
)
QUESTIONS_SEED = [
    "Write a function that finds the maximum depth of list nesting in a given list.",
    "Given an integer array nums, rotate the array to the right by k steps, where k is non-negative.",
    "Write a function that gets the musical pitch that is closest to a given frequency in Hz. A pitch should consist "
    "of a letter, possibly a # sign, and an octave number.",
    "Write a function that removes any sequences of whitespace that are between numbers in an input string.",
    "Write a function that counts the number of words in a string that have length n, where n is an input. The "
    "function should ignore characters that aren't letters, numbers, or spaces.",
    "Write a function that returns the longest palindromic substring in a given string.",
    "Create a function that will find the length of the longest substring without repeating characters in a given string.",
    "Write a function that reverses the digits in a number.",
    "Write a function that finds the valleys in a list of integers.",
    "Write a python function that reverses every group of k words in a sentence.",
]
TESTS_ASK = (
    "Your task is to write 5 tests to check the correctness of a function that solves a programming problem.\n"
    "The tests must be between [TESTS] and [/TESTS] tags.\n"
    'You must write the comment "#Test case n:" on a separate line directly above each assert statement, where n '
    "represents the test case number, starting from 1 and increasing by one for each subsequent test case.\n\n"
    "Problem: Write a Python function to get the unique elements of a list."
)
TESTS_EXAMPLE = (
    "[TESTS]\n# Test case 1:\nassert get_unique_elements([]) == []\n# Test case 2:\nassert get_unique_elements([1]) "
    "== [1]\n# Test case 3:\nassert get_unique_elements([1, 2, 3, 2, 1]) == [1, 2, 3]\n[/TESTS]"
)
SOLUTION_ASK = (
    "Your task is to write a Python function to solve a programming problem.\n"
    "The Python code must be between [PYTHON] and [/PYTHON] tags.\n"
    "You are given one example test from which you can infer the function signature.\n\n"
    "Problem: Write a Python function to get the unique elements of a list.\n"
    "Test: assert get_unique_elements([1, 2, 3, 2, 1]) == [1, 2, 3]"
)
SOLUTION_EXAMPLE = "[PYTHON]\ndef get_unique_elements(my_list):\n    return list(dict.fromkeys(my_list))\n[/PYTHON]"

NUMBERED = re.compile(r"^\s*\d+\s*[.)]\s*(\S.*?)\s*$", re.MULTILINE)
TESTS_BLOCK = re.compile(r"\[TESTS\](.*?)(?:\[/TESTS\]|\Z)", re.DOTALL)
MIN_QUESTION_WORDS = 4
STAGES = ("questions", "unique_questions", "tests", "solutions", "instruct")


class SelfInstructError(LitCodeLlamaError, ValueError):
    """An output directory made with other settings, or a model that cannot be loaded."""


@dataclass
class SelfInstructConfig:
    """Everything that decides what the pipeline produces (workers, device and batch size only decide how fast).
    `sampling` is every stage's; the question lists are `question_max_new_tokens` long instead."""

    generator: str
    coder: str
    generator_tokenizer: str | None = None
    coder_tokenizer: str | None = None
    question_prompts: int = 64  # generator samples; each continues the list with up to ~40 questions
    solutions: int = 10  # per question, as in the paper
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(512, temperature=0.8, top_p=0.95))
    question_max_new_tokens: int = 1536
    dedup_threshold: float = 0.7  # estimated Jaccard similarity of word 3-grams above which a question is a duplicate
    dedup_shingle_size: int = 3
    dedup_num_perm: int = 128
    timeout_s: float = 10.0  # wall clock per test run

    def settings(self) -> dict[str, Any]:
        """The settings as settings.json and report.json hold them: sampling's fields beside the others."""
        flat = {k: v for k, v in dataclasses.asdict(self).items() if k != "sampling"}
        return {**flat, **dataclasses.asdict(self.sampling)}


# ------------------------------------------------------------------------------------------------- prompts and parsing


def questions_prompt(tok: Tokenizer) -> list[int]:
    """The chat prompt with the first ten questions of the answer already written; the generator continues at 11."""
    seed = "\n".join(f"{i}. {q}" for i, q in enumerate(QUESTIONS_SEED, start=1))
    return encode_prompt(tok, [{"role": "user", "content": QUESTIONS_ASK}]) + tok.encode(seed + "\n")


def one_shot(ask: str, example: str, problem: str) -> list[Message]:
    """The task with its example problem, the example's answer, then the problem to answer likewise."""
    return [{"role": "user", "content": ask}, {"role": "assistant", "content": example}, {"role": "user", "content": problem}]


def tests_dialog(question: str) -> list[Message]:
    return one_shot(TESTS_ASK, TESTS_EXAMPLE, f"Problem: {question}")


def solution_dialog(question: str, test: str) -> list[Message]:
    return one_shot(SOLUTION_ASK, SOLUTION_EXAMPLE, f"Problem: {question}\nTest: {test}")


def parse_questions(text: str) -> list[str]:
    """The items of a numbered list that are long enough to be a question and free of chat-format tags."""
    return [q for q in NUMBERED.findall(text) if len(q.split()) >= MIN_QUESTION_WORDS and not any(t in q for t in TAGS)]


def parse_tests(answer: str) -> list[str]:
    """The top-level assert statements between [TESTS] tags (the whole answer if there are none), one per string;
    an answer that is not valid Python there has none."""
    match = TESTS_BLOCK.search(answer)
    try:
        tree = ast.parse(match.group(1) if match else answer)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    return [ast.unparse(node) for node in tree.body if isinstance(node, ast.Assert)]


def normalized(question: str) -> str:
    return " ".join(question.lower().split())


def deduplicate(questions: Sequence[str], threshold: float, shingle_size: int, num_perm: int) -> list[str]:
    """The questions without exact (up to case and spacing) and near duplicates, first occurrences kept."""
    keep = first_occurrences([sha256(normalized(q)) for q in questions])
    unique = [q for q, k in zip(questions, keep) if k]
    if not unique:  # near_duplicate_mask cannot size its LSH from zero signatures
        return []
    signer = Signer(num_perm, shingle_size)
    keep = near_duplicate_mask([signer.sign(normalized(q)) for q in unique], threshold, signer.scheme)
    return [q for q, k in zip(unique, keep) if k]


# ---------------------------------------------------------------------------------------------------------- filter


def test_program(solution: str, tests: Sequence[str]) -> str:
    """The solution, then its tests. (A solution that exits early with status 0 does not pass: the sandbox's
    token, printed after the tests, is missing.)"""
    return f"{solution}\n\n" + "\n".join(tests) + "\n"


def first_passing(
    sandbox: Sandbox,
    solutions: Sequence[Sequence[str]],
    tests: Sequence[Sequence[str]],
    limits: Limits = Limits(),
    workers: int | None = None,
    progress: bool = True,
) -> tuple[list[int | None], Counter]:
    """For each question, the index of its first solution that passes all its tests (None if none does), and the
    count of run outcomes.

    Round k runs, in parallel, solution k of every question without a passing solution yet, so the result is
    the first in order and later solutions of solved questions are never run.
    """
    chosen: list[int | None] = [None] * len(solutions)
    outcomes: Counter = Counter()
    rounds = max((len(s) for s in solutions), default=0)
    for k in range(rounds):
        pending = [i for i, c in enumerate(chosen) if c is None and k < len(solutions[i])]
        if not pending:
            break
        programs = [test_program(solutions[i][k], tests[i]) for i in pending]
        results = run_programs(sandbox, programs, "python", limits, workers, progress, desc=f"filter {k + 1}/{rounds}")
        for i, result in zip(pending, results):
            outcomes[result.status] += 1
            if result.status == "passed":
                chosen[i] = k
    return chosen, outcomes


def instruct_row(question: str, tests: Sequence[str], solution: str) -> dict[str, Any]:
    """A dataset row: the question and its solution as a dialog, with the tests kept for reference."""
    answer = f"```python\n{solution.strip()}\n```"
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return {"messages": messages, "question": question, "tests": list(tests), "solution": solution}


# -------------------------------------------------------------------------------------------------------- pipeline


class SelfInstruct:
    """The five stages over one output directory; models are loaded only for the stages that still have to run."""

    def __init__(
        self,
        config: SelfInstructConfig,
        out: str | Path,
        sandbox: Sandbox,
        device: str = "cpu",
        batch_size: int = 8,
        workers: int | None = None,
        progress: bool = True,
    ):
        self.config, self.out, self.sandbox = config, Path(out), sandbox
        self.device, self.batch_size, self.workers, self.progress = device, batch_size, workers, progress
        self.seconds: dict[str, float] = {}
        self.outcomes: dict[str, int] | None = None  # of the test runs, when this run filtered
        self._models: dict[tuple[str, str | None], tuple[Llama, Tokenizer]] = {}

    def run(self) -> dict[str, Any]:
        self.out.mkdir(parents=True, exist_ok=True)
        self._check_settings()
        questions = self._stage("questions", self._questions)
        unique = self._stage("unique_questions", lambda: self._deduplicate(questions))
        with_tests = self._stage("tests", lambda: self._tests(unique))
        with_solutions = self._stage("solutions", lambda: self._solutions(with_tests))
        dataset = self._stage("instruct", lambda: self._filter(with_solutions))
        counts = {
            "questions": len(questions),
            "unique_questions": len(unique),
            "with_tests": len(with_tests),
            "with_passing_solution": len(dataset),
        }
        previous = self._read_report()
        report = {
            **counts,
            "yield": {name: n / counts["questions"] if counts["questions"] else 0.0 for name, n in counts.items()},
            "solutions_generated": sum(len(row["solutions"]) for row in with_solutions),
            "test_runs": previous.get("test_runs", {}) if self.outcomes is None else self.outcomes,
            "seconds": {**previous.get("seconds", {}), **self.seconds},
            "sandbox": self.sandbox.isolation.detail,
            "config": self.config.settings(),
        }
        (self.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        return report

    # -- bookkeeping ----------------------------------------------------------------------------------------------

    def _check_settings(self) -> None:
        path, settings = self.out / "settings.json", self.config.settings()
        if path.is_file():
            before = json.loads(path.read_text())
            changed = {k: (before.get(k), v) for k, v in settings.items() if before.get(k) != v}
            if changed:
                raise SelfInstructError(
                    f"{self.out} was made with other settings ({', '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in changed.items())}); "
                    "resume with the same ones, use a new --out, or delete settings.json and the stage files to redo"
                )
        path.write_text(json.dumps(settings, indent=2) + "\n")

    def _stage(self, name: str, compute: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """Rows of stage `name`: read from `<out>/<name>.jsonl` if there, else computed and written atomically."""
        path = self.out / f"{name}.jsonl"
        if path.is_file():
            return read_jsonl(path, error=SelfInstructError)
        start = time.monotonic()
        rows = compute()
        partial = path.with_suffix(".partial")
        write_jsonl(partial, rows)
        partial.rename(path)
        self.seconds[name] = round(time.monotonic() - start, 3)
        return rows

    def _read_report(self) -> dict[str, Any]:
        path = self.out / "report.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    # -- models ---------------------------------------------------------------------------------------------------

    def _model(self, role: str) -> tuple[Llama, Tokenizer]:
        """The generator's or the coder's model and tokenizer, loaded once (once in all when they are the same)."""
        checkpoint, tokenizer = getattr(self.config, role), getattr(self.config, f"{role}_tokenizer")
        if (checkpoint, tokenizer) not in self._models:
            try:
                self._models[checkpoint, tokenizer] = load_for_inference(checkpoint, self.device, tokenizer=tokenizer)
            except (OSError, ValueError) as e:
                raise SelfInstructError(f"cannot load the {role} model {checkpoint}: {e}") from e
        return self._models[checkpoint, tokenizer]

    def _generate(self, role: str, prompts: Sequence[list[int]], stage: int, sampling: SamplingConfig) -> list[str]:
        """Sampled answers to token prompts, batch by batch with a progress bar; seeded per stage so that a resumed
        stage samples as a fresh one would."""
        s = replace(sampling, seed=sampling.seed + stage)
        model, tok = self._model(role)
        rng = s.generator(self.device)
        answers = []
        for start in tqdm(range(0, len(prompts), self.batch_size), desc=STAGES[stage], disable=not self.progress):
            batch = prompts[start : start + self.batch_size]
            outputs = generate(model, batch, s, (tok.eos_id,), generator=rng)
            answers += [tok.decode(o) for o in outputs]
        return answers

    # -- stages ---------------------------------------------------------------------------------------------------

    def _questions(self) -> list[dict[str, Any]]:
        prompt = questions_prompt(self._model("generator")[1])
        c = self.config
        answers = self._generate("generator", [prompt] * c.question_prompts, 0,
                                 replace(c.sampling, max_new_tokens=c.question_max_new_tokens))
        return [{"question": q, "sample": i} for i, answer in enumerate(answers) for q in parse_questions(answer)]

    def _deduplicate(self, questions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        c = self.config
        unique = deduplicate([row["question"] for row in questions], c.dedup_threshold, c.dedup_shingle_size, c.dedup_num_perm)
        return [{"id": i, "question": q} for i, q in enumerate(unique)]

    def _tests(self, questions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not questions:  # nothing to ask: the coder is not even loaded
            return []
        tok = self._model("coder")[1]
        prompts = [encode_prompt(tok, tests_dialog(row["question"])) for row in questions]
        answers = self._generate("coder", prompts, 2, self.config.sampling)
        rows = [{**row, "tests": parse_tests(answer)} for row, answer in zip(questions, answers)]
        return [row for row in rows if row["tests"]]

    def _solutions(self, questions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not questions:
            return []
        n, tok = self.config.solutions, self._model("coder")[1]
        prompts = [encode_prompt(tok, solution_dialog(row["question"], row["tests"][0])) for row in questions]
        answers = self._generate("coder", [p for p in prompts for _ in range(n)], 3, self.config.sampling)
        return [{**row, "solutions": [extract_code(a) for a in answers[i * n : (i + 1) * n]]} for i, row in enumerate(questions)]

    def _filter(self, questions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        limits = Limits(wall_s=self.config.timeout_s, cpu_s=max(1, round(self.config.timeout_s)))
        chosen, outcomes = first_passing(
            self.sandbox, [row["solutions"] for row in questions], [row["tests"] for row in questions],
            limits, self.workers, self.progress,
        )
        self.outcomes = dict(outcomes)
        return [
            instruct_row(row["question"], row["tests"], row["solutions"][k])
            for row, k in zip(questions, chosen)
            if k is not None
        ]


# -------------------------------------------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lit_codellama self-instruct",
        description=__doc__.split("\n\n")[0] + " Stages whose output is already in --out are skipped.",
    )
    d = SelfInstructConfig("", "")
    s = d.sampling
    add = parser.add_argument
    add("--generator", required=True, help="checkpoint that writes the questions (anything load_model loads)")
    add("--coder", required=True, help="checkpoint that writes the tests and the solutions")
    add("--out", required=True, type=Path, help="output directory; an existing one is resumed")
    add("--generator-tokenizer", help="sentencepiece model of the generator (default: tokenizer.model beside it)")
    add("--coder-tokenizer", help="sentencepiece model of the coder (default: tokenizer.model beside it)")
    add("--question-prompts", type=int, default=d.question_prompts, help="question lists sampled from the generator (default: %(default)s)")
    add("--solutions", type=int, default=d.solutions, help="solutions sampled per question (default: %(default)s)")
    add("--temperature", type=float, default=s.temperature, help="sampling temperature of every stage (default: %(default)s)")
    add("--top-p", type=float, default=s.top_p, help="nucleus sampling threshold (default: %(default)s)")
    add("--max-new-tokens", type=int, default=s.max_new_tokens, help="length limit of tests and solutions (default: %(default)s)")
    add("--question-max-new-tokens", type=int, default=d.question_max_new_tokens, help="length limit of a question list (default: %(default)s)")
    add("--dedup-threshold", type=float, default=d.dedup_threshold,
        help="estimated Jaccard similarity (word 3-grams) from which a question is a near duplicate")
    add("--timeout-s", type=float, default=d.timeout_s, help="wall-clock limit of one test run (default: %(default)s)")
    add("--seed", type=int, default=s.seed, help="sampling seed (default: %(default)s)")
    add("--batch-size", type=int, default=8, help="prompts generated together (default: %(default)s)")
    add("--workers", type=int, help="test runs in parallel (default: the number of cores)")
    add("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="where the models run (default: %(default)s)")
    add("--allow-weak-sandbox", action="store_true",
        help="run tests without bubblewrap isolation (also needs LIT_CODELLAMA_ALLOW_WEAK_SANDBOX=1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    namespace = parser.parse_args(argv)
    sampling, args = SamplingConfig.from_args(namespace), vars(namespace)
    runtime = {key: args.pop(key) for key in ("out", "batch_size", "workers", "device", "allow_weak_sandbox")}
    for option in dataclasses.fields(SamplingConfig):  # read by from_args
        del args[option.name]
    config = SelfInstructConfig(**args, sampling=sampling)
    try:
        sandbox = Sandbox(allow_weak=runtime["allow_weak_sandbox"])  # refuse before generating anything
        pipeline = SelfInstruct(config, runtime["out"], sandbox, runtime["device"], runtime["batch_size"], runtime["workers"])
        report = pipeline.run()
    except LitCodeLlamaError as e:
        parser.error(str(e))
    print(format_report(report, runtime["out"]))
    return 0


def format_report(report: dict[str, Any], out: Path) -> str:
    lines = [f"self-instruct yield ({out}):"]
    for name in ("questions", "unique_questions", "with_tests", "with_passing_solution"):
        lines.append(f"  {name:<24}{report[name]:>8}  ({report['yield'][name]:.1%} of questions)")
    runs = ", ".join(f"{k}: {v}" for k, v in sorted(report["test_runs"].items())) or "none"
    lines.append(f"  test runs: {runs}")
    lines.append(f"  dataset: {out / 'instruct.jsonl'}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
