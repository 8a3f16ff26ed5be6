import json

import pytest

from lit_codellama.checkpoint import load_model
from lit_codellama.evaluation.humaneval import humaneval_problems
from lit_codellama.evaluation.instruct import evaluate_instruct, extract_code, instruct_problems
from lit_codellama.evaluation.mbpp import mbpp_problems
from lit_codellama.evaluation.tasks import Sample, score_samples
from lit_codellama.generate import SamplingConfig

CODE = "def f(x):\n    return x + 1\n"


@pytest.mark.parametrize(
    "answer",
    [
        f"Here you go:\n```python\n{CODE}```\nIt adds one.\n```python\nprint(f(1))\n```",
        f"```\n{CODE}```",
        f"[PYTHON]\n{CODE}[/PYTHON]\nDone.",
        f"Sure:\n```py\n{CODE}",  # unclosed at the end of the generation
        CODE,  # bare code
    ],
)
def test_the_first_code_block_is_extracted(answer):
    assert extract_code(answer) == CODE


def test_humaneval_is_asked_as_one_chat_turn():
    [original] = humaneval_problems(limit=1)
    [problem] = instruct_problems("humaneval", [original])
    assert problem.prompt.startswith("[INST] ") and problem.prompt.endswith(" [/INST]")
    assert original.prompt.strip() in problem.prompt
    assert problem.stop == () and problem.tests == original.tests


def test_full_functions_and_bare_bodies_from_answers_pass_humaneval(sandbox):
    originals = humaneval_problems(limit=3)
    problems = instruct_problems("humaneval", originals)
    answers = [f"```python\n{p.prompt}{p.reference}```" for p in originals]  # the whole function, rewritten
    answers += [p.reference for p in originals]  # only the body
    answers += ["```python\ndef nothing():\n    pass\n```"] * 3
    samples = [Sample(p.task_id, extract_code(a)) for p, a in zip(originals * 3, answers)]
    summary = score_samples("humaneval", problems, samples, sandbox, ks=(1,), progress=False)
    assert summary["n_samples"] == 9 and summary["status_counts"] == {"passed": 6, "failed": 3}


def test_mbpp_is_asked_zero_shot_with_its_tests(tmp_path, sandbox):
    rows = [
        {"task_id": i, "text": f"Shot task {i}.", "code": "def g():\n    return 1", "test_list": ["assert g() == 1"]}
        for i in (2, 3, 4)
    ]
    rows.append({"task_id": 11, "text": "Write a function to double a number.", "code": "def double(x):\n    return 2 * x",
                 "test_list": ["assert double(2) == 4", "assert double(0) == 0"], "test_setup_code": ""})
    (tmp_path / "mbpp.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    [problem] = instruct_problems("mbpp", mbpp_problems(tmp_path / "mbpp.jsonl"))
    assert problem.prompt.startswith("[INST] You are an expert Python programmer, and here is your task: Write a function to double")
    assert "assert double(2) == 4" in problem.prompt
    assert not any(marker in problem.prompt for marker in ("Shot task", "[BEGIN]", "[DONE]"))
    answer = "The function:\n```python\ndef double(x):\n    return x * 2\n```"
    summary = score_samples("mbpp", [problem], [Sample(problem.task_id, extract_code(answer))], sandbox, ks=(1,), progress=False)
    assert summary["pass@1"] == 1.0


def test_unknown_task_has_no_instruct_format():
    with pytest.raises(ValueError, match="no instruct prompt format for task 'multipl-e'"):
        instruct_problems("multipl-e", humaneval_problems(limit=1))


def test_instruct_evaluation_runs_a_chat_model_end_to_end(tmp_path, tokenizer, tiny_checkpoint, sandbox):
    model = load_model(tiny_checkpoint).eval()
    summary = evaluate_instruct("humaneval", humaneval_problems(limit=2), model, tokenizer, sampling=SamplingConfig(max_new_tokens=8),
                                sandbox=sandbox, ks=(1,), out_dir=tmp_path, progress=False)
    assert summary["prompt_format"] == "instruct" and summary["n_samples"] == 2
    assert 0.0 <= summary["pass@1"] <= 1.0  # an untrained model: whatever it scores is reported
    answers = [json.loads(line) for line in (tmp_path / "answers.jsonl").read_text().splitlines()]
    results = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r["completion"] for r in results] == [extract_code(a["answer"]) for a in answers]


def test_eval_cli_asks_instruct_models_in_the_chat_format(tmp_path, tokenizer, tiny_checkpoint):
    from lit_codellama.evaluation.cli import main

    out = tmp_path / "he-instruct"
    args = ["humaneval", "--checkpoint", str(tiny_checkpoint), "--tokenizer", str(tokenizer.path), "--limit", "2",
            "--max-new-tokens", "8", "--k", "1", "--prompt-format", "instruct", "--device", "cpu", "--out", str(out)]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["prompt_format"] == "instruct" and summary["n_samples"] == 2
    assert (out / "answers.jsonl").is_file()
