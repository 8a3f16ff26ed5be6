"""MBPP from a local mbpp.jsonl: the 3-shot prompt, scoring, and the errors for missing data."""

import json

import huggingface_hub.constants
import pytest

from lit_codellama.evaluation.data import EvalInputError
from lit_codellama.evaluation.mbpp import mbpp_problems
from lit_codellama.evaluation.tasks import Sample, score_samples

SHOTS = [
    {"task_id": 2, "text": "Write a function to find the similar elements from the given two tuple lists.",
     "code": "def similar_elements(test_tup1, test_tup2):\r\n"
             "  res = tuple(set(test_tup1) & set(test_tup2))\r\n  return (res) ",
     "test_list": ["assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)",
                   "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)",
                   "assert similar_elements((11, 12, 14, 13),(17, 15, 14, 13)) == (13, 14)"]},
    {"task_id": 3, "text": "Write a python function to identify non-prime numbers.",
     "code": "import math\r\ndef is_not_prime(n):\r\n    result = False\r\n"
             "    for i in range(2,int(math.sqrt(n)) + 1):\r\n        if n % i == 0:\r\n"
             "            result = True\r\n    return result",
     "test_list": ["assert is_not_prime(2) == False", "assert is_not_prime(10) == True",
                   "assert is_not_prime(35) == True"]},
    {"task_id": 4,
     "text": "Write a function to find the largest integers from a given list of numbers using heap queue algorithm.",
     "code": "import heapq as hq\r\ndef heap_queue_largest(nums,n):\r\n  largest_nums = hq.nlargest(n, nums)\r\n"
             "  return largest_nums",
     "test_list": ["assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],3)==[85, 75, 65] ",
                   "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],2)==[85, 75] ",
                   "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],5)==[85, 75, 65, 58, 35]"]},
]
TESTS = [
    {"task_id": 11, "text": "Write a function to reverse a string.", "code": "def reverse(s):\r\n  return s[::-1]",
     "test_list": ["assert reverse('abc') == 'cba'", "assert reverse('') == ''", "assert reverse('ab') == 'ba'"],
     "test_setup_code": ""},
    {"task_id": 12, "text": "Write a function to add the constant K to a number.",
     "code": "def add_k(x):\r\n  return x + K",
     "test_list": ["assert add_k(1) == 11", "assert add_k(0) == 10", "assert add_k(-10) == 0"],
     "test_setup_code": "K = 10"},
    {"task_id": 600, "text": "A training task, not a test task.", "code": "pass", "test_list": ["assert True"] * 3},
]


@pytest.fixture
def mbpp_file(tmp_path):
    path = tmp_path / "mbpp.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in [*SHOTS, *TESTS]))
    return path


def test_prompt_is_three_solved_shots_then_the_task(mbpp_file):
    problems = mbpp_problems(mbpp_file)
    assert [p.task_id for p in problems] == ["Mbpp/11", "Mbpp/12"]  # only test ids 11-510
    prompt = problems[0].prompt
    assert prompt.count("[DONE]") == 3 and prompt.count("You are an expert Python programmer") == 4
    assert prompt.startswith("You are an expert Python programmer, and here is your task: Write a function to find the "
                             "similar elements from the given two tuple lists. Your code should pass these tests:\n\n"
                             "assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)\n")
    assert prompt.endswith("Write a function to reverse a string. Your code should pass these tests:\n\n"
                           "assert reverse('abc') == 'cba'\nassert reverse('') == ''\n"
                           "assert reverse('ab') == 'ba'\n[BEGIN]\n")
    assert problems[0].stop == ("[DONE]",)


def test_reference_code_passes_and_the_prompt_is_not_part_of_the_program(mbpp_file):
    problems = mbpp_problems(mbpp_file)
    samples = [Sample(p.task_id, p.reference) for p in problems] + [Sample("Mbpp/12", "def add_k(x):\n  return x")]
    summary = score_samples("mbpp", problems, samples, ks=(1,), progress=False)
    assert summary["status_counts"] == {"passed": 2, "failed": 1}  # task 12 needs its test_setup_code


def test_generations_json_holds_the_code_the_harness_appends_its_asserts_to(mbpp_file, tmp_path):
    problems = mbpp_problems(mbpp_file)
    samples = [Sample(p.task_id, p.reference) for p in problems]
    score_samples("mbpp", problems, samples, ks=(1,), out_dir=tmp_path, progress=False)
    generations = json.loads((tmp_path / "generations.json").read_text())
    assert generations == [[TESTS[0]["code"]], [TESTS[1]["code"]]]  # no few-shot prompt, no tests


def test_missing_few_shot_tasks_is_an_error(tmp_path):
    path = tmp_path / "mbpp.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in TESTS))
    with pytest.raises(EvalInputError, match=r"lacks the few-shot tasks \[2, 3, 4\]"):
        mbpp_problems(path)


def test_unreachable_hub_says_where_to_put_a_local_copy(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    expected = r"cannot serve 'google-research-datasets/mbpp' .*download mbpp.jsonl .*--data PATH"
    with pytest.raises(EvalInputError, match=expected):
        mbpp_problems()


def test_a_solution_that_exits_before_the_asserts_fails(mbpp_file):
    problems = mbpp_problems(mbpp_file)
    early = Sample("Mbpp/11", "def reverse(s):\n  return s\nimport os\nos._exit(0)")
    summary = score_samples("mbpp", problems, [early], ks=(1,), progress=False)
    assert summary["status_counts"] == {"exited_early": 1}
