import json

import pytest

from lit_codellama.evaluation.sandbox import Limits
from lit_codellama.instruct import self_instruct
from lit_codellama.instruct.dataset import InstructSource, load_instruct
from lit_codellama.instruct.self_instruct import (
    QUESTIONS_ASK,
    QUESTIONS_SEED,
    deduplicate,
    first_passing,
    main,
    parse_questions,
    parse_tests,
    questions_prompt,
)

TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]
PASSING = "def add(a, b):\n    return a + b"
FAILING = "def add(a, b):\n    return a - b"
HANGING = "def add(a, b):\n    while True:\n        pass"
EXITS_EARLY = "import os\ndef add(a, b):\n    return 0\nos._exit(0)"
SYS_EXIT = "import sys\ndef add(a, b):\n    return 0\nsys.exit()"


def test_numbered_list_items_become_questions():
    text = "11. Write a function that sums a list.\n12) Given a string, count its vowels please.\n13. Too short\nfoo\n14. Write a function that [INST] escapes the format.\n 15 .  Return the n-th prime number quickly."
    assert parse_questions(text) == [
        "Write a function that sums a list.",
        "Given a string, count its vowels please.",
        "Return the n-th prime number quickly.",
    ]


def test_tests_are_the_asserts_between_the_tags():
    answer = "[TESTS]\n# Test case 1:\nassert f([]) == []\nx = 3\n# Test case 2:\nassert f([1,2]) == [2, 1], 'msg'\n[/TESTS]\nMore text."
    assert parse_tests(answer) == ["assert f([]) == []", "assert f([1, 2]) == [2, 1], 'msg'"]
    assert parse_tests("[TESTS]\nassert f( == \n[/TESTS]") == []
    assert parse_tests("no tests at all") == []


def test_exact_and_near_duplicate_questions_are_removed():
    questions = [
        "Write a function that reverses a linked list in place.",
        "write a function that  REVERSES a linked list in place.",
        "Write a function that reverses a linked list in place!",
        "Write a function that returns the n-th Fibonacci number using memoization.",
    ]
    assert deduplicate(questions, threshold=0.7, shingle_size=3, num_perm=128) == [questions[0], questions[3]]


def test_the_first_passing_solution_is_kept_and_later_ones_never_run(sandbox):
    solutions = [[PASSING, FAILING], [FAILING, PASSING, PASSING], [FAILING, FAILING]]
    chosen, outcomes = first_passing(sandbox, solutions, [TESTS] * 3, progress=False)
    assert chosen == [0, 1, None]
    assert outcomes == {"passed": 2, "failed": 3}  # round 1 runs 3 programs, round 2 the 2 unsolved


def test_hanging_and_hostile_solutions_never_pass(sandbox, tmp_path):
    escape = tmp_path / "escaped.txt"
    writes_outside = f"open({str(escape)!r}, 'w').write('x')\n{PASSING}"
    phones_home = f"import socket\nsocket.create_connection(('127.0.0.1', 22), timeout=1)\n{PASSING}"
    solutions = [[HANGING], [EXITS_EARLY], [SYS_EXIT], [writes_outside], [phones_home], [PASSING]]
    limits = Limits(wall_s=3.0, cpu_s=2)
    chosen, outcomes = first_passing(sandbox, solutions, [TESTS] * len(solutions), limits, progress=False)
    assert chosen == [None] * 5 + [0]
    assert outcomes == {"timeout": 1, "exited_early": 2, "failed": 2, "passed": 1}
    assert not escape.exists()


def test_questions_prompt_asks_for_questions_and_has_answered_the_first_ten(tokenizer):
    ask, answer = tokenizer.decode(questions_prompt(tokenizer)).split(" [/INST] ")
    assert ask == f"[INST] {QUESTIONS_ASK}"
    assert parse_questions(answer) == QUESTIONS_SEED
    assert answer.splitlines()[-1].startswith("10. ") and answer.endswith("\n")  # the generator continues at 11


def run_cli(out, *extra):
    return main(["--generator", str(out / "no-generator"), "--coder", str(out / "no-coder"), "--out", str(out),
                 "--solutions", "2", "--workers", "2", *extra])


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_a_resumed_run_skips_finished_stages_and_writes_an_instruct_dataset(tmp_path, capsys):
    """Stages 1-4 are on disk, so no model is loaded (the checkpoint paths do not even exist): only the filter runs."""
    questions = ["Write a function add(a, b) that returns the sum of two numbers.", "Write a function that is impossible."]
    write_jsonl(tmp_path / "questions.jsonl", [{"question": q, "sample": 0} for q in questions + questions])
    write_jsonl(tmp_path / "unique_questions.jsonl", [{"id": i, "question": q} for i, q in enumerate(questions)])
    with_tests = [{"id": i, "question": q, "tests": TESTS} for i, q in enumerate(questions)]
    write_jsonl(tmp_path / "tests.jsonl", with_tests)
    write_jsonl(tmp_path / "solutions.jsonl", [{**with_tests[0], "solutions": [FAILING, PASSING]},
                                               {**with_tests[1], "solutions": [FAILING, EXITS_EARLY]}])
    assert run_cli(tmp_path) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert {k: report[k] for k in ("questions", "unique_questions", "with_tests", "with_passing_solution")} == {
        "questions": 4, "unique_questions": 2, "with_tests": 2, "with_passing_solution": 1}
    assert report["test_runs"] == {"failed": 2, "exited_early": 1, "passed": 1}
    assert "with_passing_solution" in capsys.readouterr().out

    [row] = [json.loads(line) for line in (tmp_path / "instruct.jsonl").read_text().splitlines()]
    assert row["solution"] == PASSING and row["tests"] == TESTS
    [dialog] = load_instruct(InstructSource(path=str(tmp_path / "instruct.jsonl")))
    assert dialog[0] == {"role": "user", "content": questions[0]}
    assert dialog[1]["content"] == f"```python\n{PASSING}\n```"

    before = (tmp_path / "instruct.jsonl").stat().st_mtime_ns
    assert run_cli(tmp_path) == 0  # everything is done: nothing runs again
    assert (tmp_path / "instruct.jsonl").stat().st_mtime_ns == before
    assert json.loads((tmp_path / "report.json").read_text())["test_runs"] == report["test_runs"]


def test_resuming_with_other_settings_is_refused(tmp_path, capsys):
    write_jsonl(tmp_path / "questions.jsonl", [])
    assert run_cli(tmp_path) == 0
    with pytest.raises(SystemExit):
        run_cli(tmp_path, "--temperature", "0.2")
    assert "temperature: 0.8 -> 0.2" in capsys.readouterr().err


def tiny_args(checkpoint, out):
    return ["--generator", str(checkpoint), "--coder", str(checkpoint), "--out", str(out), "--question-prompts", "2",
            "--question-max-new-tokens", "48", "--solutions", "2", "--max-new-tokens", "24", "--temperature", "1.0",
            "--workers", "2"]


# What a capable model would answer at each stage, so that every stage keeps a strict, known subset of the last.
SCRIPTED_QUESTIONS = (
    "11. Write a function add(a, b) that returns the sum of two numbers.\n"
    "12. write a function add(a, b)  that returns the SUM of two numbers.\n"  # an exact duplicate up to case/spacing
    "13. Write a function largest(xs) that returns the largest element of a list.\n"
    "14. Write a function that reverses a string s.\n"
)
SCRIPTED_TESTS = {
    "add": "[TESTS]\n# Test case 1:\nassert add(1, 2) == 3\n# Test case 2:\nassert add(-1, 1) == 0\n[/TESTS]",
    "largest": "[TESTS]\n# Test case 1:\nassert largest([1, 3, 2]) == 3\n[/TESTS]",
    "reverses": "I cannot think of tests for that.",  # no asserts: dropped at the tests stage
}
SCRIPTED_SOLUTIONS = {"add": f"[PYTHON]\n{PASSING}\n[/PYTHON]", "largest": "[PYTHON]\ndef largest(xs):\n    return xs[0]\n[/PYTHON]"}


def scripted_generate(tokenizer, calls):
    def generate(model, prompts, sampling, *args, **kwargs):
        calls.append((sampling.max_new_tokens, sampling.temperature, sampling.top_p))
        answers = []
        for ids in prompts:
            turn = tokenizer.decode(ids).rsplit("[INST]", 1)[-1]  # the question asked last
            if QUESTIONS_ASK in turn:
                script = SCRIPTED_QUESTIONS
            else:
                key = next(k for k in SCRIPTED_TESTS if k in turn)
                script = SCRIPTED_SOLUTIONS[key] if "Test:" in turn else SCRIPTED_TESTS[key]
            answers.append(tokenizer.encode(script))
        return answers
    return generate


def test_the_whole_pipeline_keeps_a_shrinking_subset_at_each_stage_and_reports_its_yield(
    tmp_path, tiny_checkpoint, tokenizer, capsys, monkeypatch
):
    calls = []
    monkeypatch.setattr(self_instruct, "generate", scripted_generate(tokenizer, calls))
    out = tmp_path / "run"
    assert main(tiny_args(tiny_checkpoint, out)) == 0  # 2 question samples of 4 questions each, 2 solutions each
    # one batch per stage; question lists have their own length limit, every stage the options' sampling
    assert calls == [(48, 1.0, 0.95), (24, 1.0, 0.95), (24, 1.0, 0.95)]
    for stage in ("questions", "unique_questions", "tests", "solutions", "instruct"):
        assert (out / f"{stage}.jsonl").is_file()
    report = json.loads((out / "report.json").read_text())
    counts = [report[k] for k in ("questions", "unique_questions", "with_tests", "with_passing_solution")]
    assert counts == [8, 3, 2, 1]
    assert report["test_runs"] == {"passed": 1, "failed": 2}  # add passes at once; largest fails both rounds
    [row] = [json.loads(line) for line in (out / "instruct.jsonl").read_text().splitlines()]
    assert row["question"].startswith("Write a function add(a, b)") and row["solution"] == PASSING + "\n"
    assert set(report["seconds"]) == {"questions", "unique_questions", "tests", "solutions", "instruct"}
    printed = capsys.readouterr().out.split()
    assert printed[printed.index("with_passing_solution") + 1] == "1"


def test_the_tiny_coder_writes_tests_and_solutions_that_the_sandbox_runs(tmp_path, tiny_checkpoint):
    """An untrained generator writes no questions, so the coder's stages get hand-written inputs: questions first,
    then (deleting the later stages' files to redo them) tests."""
    questions = ["Write a function add(a, b) that returns the sum of two numbers.",
                 "Write a function that returns the largest element of a list."]
    write_jsonl(tmp_path / "questions.jsonl", [{"question": q, "sample": 0} for q in questions + questions[:1]])
    assert main(tiny_args(tiny_checkpoint, tmp_path)) == 0
    assert json.loads((tmp_path / "report.json").read_text())["unique_questions"] == 2

    write_jsonl(tmp_path / "tests.jsonl", [{"id": i, "question": q, "tests": TESTS} for i, q in enumerate(questions)])
    for stage in ("solutions", "instruct"):
        (tmp_path / f"{stage}.jsonl").unlink()
    assert main(tiny_args(tiny_checkpoint, tmp_path)) == 0
    solutions = [json.loads(line) for line in (tmp_path / "solutions.jsonl").read_text().splitlines()]
    assert [len(row["solutions"]) for row in solutions] == [2, 2]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["with_tests"] == 2 and report["solutions_generated"] == 4
    assert 2 <= sum(report["test_runs"].values()) <= 4  # round 2 runs only the questions round 1 did not solve
    assert report["with_passing_solution"] == len((tmp_path / "instruct.jsonl").read_text().splitlines())
