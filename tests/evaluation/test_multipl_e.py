"""MultiPL-E: each paper language's toolchain builds and runs small hand-written problems in the sandbox."""

import dataclasses
import json

import pytest

from lit_codellama.evaluation.data import EvalInputError
from lit_codellama.evaluation.execution import LANGUAGES, Language
from lit_codellama.evaluation.multipl_e import PAPER_LANGUAGES, evaluate_multipl_e, multipl_e_problems
from lit_codellama.evaluation.tasks import Sample, score_samples

# name -> (prompt, tests, stop tokens, correct completion, wrong completion), in MultiPL-E's layout:
# the completion is the function body and the tests start by closing the function.
PROBLEMS = {
    "cpp": (
        # MultiPL-E's prompts also include <bits/stdc++.h>, which takes seconds to compile.
        "#include<assert.h>\n// Return the sum of x and y.\nlong add(long x, long y) {\n",
        "}\nint main() {\n    auto candidate = add;\n    assert(candidate((2), (3)) == (5));\n}\n",
        ["\n}"], "    return x + y;", "    return x - y;",
    ),
    "java": (
        "import java.util.*;\nimport org.javatuples.*;\nclass Problem {\n"
        "    // Return x + y and x - y as a pair.\n"
        "    public static Pair<Long, Long> sumAndDiff(long x, long y) {\n",
        "    }\n    public static void main(String[] args) {\n"
        "    assert(sumAndDiff((5l), (3l)).equals((Pair.with(8l, 2l))));\n    }\n\n}\n",
        ["\n    }\n"], "        return Pair.with(x + y, x - y);", "        return Pair.with(x - y, x + y);",
    ),
    "php": (
        "<?php\n// Return the sum of x and y.\nfunction add($x, $y) {\n",
        "}\n\nfunction candidate(...$args) {\n    return add(...$args);\n}\n\nfunction test(): void {\n"
        "    if (candidate(2, 3) !== 5) { throw new Exception(\"Test failed!\"); }\n}\n\ntest();",
        ["\nfunction", "\n?>", "\n//", "\n#"], "    return $x + $y;", "    return $x * $y;",
    ),
    "ts": (
        "//Return the sum of x and y.\nfunction add(x: number, y: number): number {\n",
        "}\n\ndeclare var require: any;\nconst assert = require('node:assert');\n\n\nfunction test() {\n"
        "  let candidate = add;\n  assert.deepEqual(candidate(2, 3),5);\n}\n\ntest();",
        ["\nfunction ", "\n/*", "\n//", "\nclass"], "    return x + y;", "    return x + y + 1;",
    ),
    "cs": (
        "using System;\nusing System.Numerics;\nusing System.Diagnostics;\nusing System.Collections.Generic;\n"
        "using System.Linq;\nclass Problem {\n    // Return the sum of x and y.\n"
        "    public static long Add(long x, long y) {\n",
        "    }\n    public static void Main(string[] args) {\n    Debug.Assert(Add((2L), (3L)) == (5L));\n    }\n\n}\n",
        ["\n    }\n"], "        return x + y;", "        return x * y;",
    ),
    "sh": (
        "#!/bin/bash\n# Return the sum of $1 and $2.\nadd() {\n",
        "}\n\ncandidate() {\n    add \"$@\"\n}\n\nset -e\nrun_test() {\n"
        "    [[ $(candidate \"2\" \"3\") = \"5\" ]]\n}\n\nrun_test",
        ["\n}"], "    echo $(( $1 + $2 ))", "    echo $(( $1 * $2 ))",
    ),
}


def write_problems(tmp_path, language):
    prompt, tests, stops, _, _ = PROBLEMS[language]
    path = tmp_path / f"humaneval-{language}.jsonl"
    row = {"name": f"HumanEval_53_add_{language}", "language": language, "prompt": prompt, "tests": tests,
           "stop_tokens": stops}
    path.write_text(json.dumps(row) + "\n")
    return path


@pytest.mark.parametrize("language", PAPER_LANGUAGES)
def test_right_program_passes_and_wrong_one_fails(language, tmp_path):
    missing = LANGUAGES[language].missing_toolchain()
    assert missing is None, f"the test machine needs every paper language's toolchain: {missing}"
    [problem] = multipl_e_problems(language, write_problems(tmp_path, language))
    _, _, _, right, wrong = PROBLEMS[language]
    summary = score_samples(f"multipl-e-{language}", [problem],
                            [Sample(problem.task_id, right), Sample(problem.task_id, wrong)], ks=(1, 2), progress=False)
    assert summary["status_counts"] == {"passed": 1, "failed": 1}
    assert summary["pass@1"] == 0.5 and summary["pass@2"] == 1.0


# A wrong completion per language that ends the program with status 0 before its tests have finished.
EARLY_EXITS = {
    "cpp": "    return x - y;\n}\n#include <cstdlib>\nstatic int bye = (std::exit(0), 0);  // before main\n"
           "long unused() {\n    return 0;",
    "java": "        System.exit(0); return null;",
    "php": "    exit(0);",
    "ts": "    (globalThis as any).process.exit(0); return 0;",
    "cs": "        System.Environment.Exit(0); return 0;",
    "sh": "    echo 0\n}\nexit 0\nunused() {\n    :",  # in add, `exit` would leave only its $(...) subshell
}


def score_one(tmp_path, language, completion, tests=None):
    [problem] = multipl_e_problems(language, write_problems(tmp_path, language))
    if tests is not None:
        problem = dataclasses.replace(problem, tests=tests)
    return score_samples(f"multipl-e-{language}", [problem], [Sample(problem.task_id, completion)], ks=(1,),
                         progress=False)


@pytest.mark.parametrize("language", PAPER_LANGUAGES)
def test_a_program_that_exits_before_its_tests_finish_fails(language, tmp_path):
    assert score_one(tmp_path, language, EARLY_EXITS[language])["status_counts"] == {"exited_early": 1}


def test_cs_a_failed_debug_assert_fails_however_much_is_printed_after_it(tmp_path):
    prompt, tests, *_ = PROBLEMS["cs"]
    tests = tests.replace("== (5L));\n", "== (5L));\n    Console.Write(new string('x', 5000));\n")
    assert "Console.Write(" in tests
    assert score_one(tmp_path, "cs", "        return x * y;", tests)["status_counts"] == {"failed": 1}


def test_cs_a_right_program_may_print_anything(tmp_path):
    right = '        Console.WriteLine("Unhandled Exception: DefaultTraceListener.Fail"); return x + y;'
    assert score_one(tmp_path, "cs", right)["status_counts"] == {"passed": 1}


def test_generations_json_holds_prompt_plus_completion_per_problem(tmp_path):
    [problem] = multipl_e_problems("sh", write_problems(tmp_path, "sh"))
    prompt, _, _, right, wrong = PROBLEMS["sh"]
    samples = [Sample(problem.task_id, right), Sample(problem.task_id, wrong)]
    score_samples("multipl-e-sh", [problem], samples, ks=(1,), out_dir=tmp_path / "out", progress=False)
    assert json.loads((tmp_path / "out" / "generations.json").read_text()) == [[prompt + right, prompt + wrong]]


def test_compile_error_is_a_failure(tmp_path):
    [problem] = multipl_e_problems("cpp", write_problems(tmp_path, "cpp"))
    summary = score_samples("multipl-e-cpp", [problem], [Sample(problem.task_id, "    return x +;")], progress=False)
    assert summary["status_counts"] == {"failed": 1}


def test_missing_toolchain_is_skipped_with_install_advice_not_counted(monkeypatch, tmp_path):
    absent = Language("sh", "main.sh", ("nosh", "{input}/main.sh"), ("nosh",), "apt-get install -y nosh", "")
    monkeypatch.setitem(LANGUAGES, "sh", absent)
    assert absent.missing_toolchain() == "nosh not found; install with `apt-get install -y nosh`"
    # The model is never asked for a skipped language, so none is needed here.
    summary = evaluate_multipl_e(None, None, languages=("sh",), data={"sh": write_problems(tmp_path, "sh")})
    assert summary["languages"] == {} and "pass@1" not in summary
    assert "nosh not found" in summary["skipped"]["sh"]


def test_unknown_language_and_missing_fields_are_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown MultiPL-E language 'rust'"):
        multipl_e_problems("rust", tmp_path / "x.jsonl")
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"name": "x", "prompt": "p"}) + "\n")
    with pytest.raises(EvalInputError, match=r"line 1: missing field\(s\) \['tests', 'stop_tokens'\]"):
        multipl_e_problems("sh", path)
