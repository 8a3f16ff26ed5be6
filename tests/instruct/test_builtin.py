import ast
import sysconfig
from pathlib import Path

from lit_codellama.evaluation.instruct import extract_code
from lit_codellama.instruct.builtin import stdlib_rows
from lit_codellama.instruct.dataset import to_dialog

DOC = "Return the sum of the two numbers given, rounded to the nearest integer."


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_documented_public_functions_become_instructions(tmp_path):
    write(tmp_path / "pkg" / "mod.py", f'def add(a, b=1):\n    """{DOC}"""\n    return round(a + b)\n\n'
                                       'def short(x):\n    """Too short a docstring."""\n\n'
                                       f'def _private(x):\n    """{DOC}"""\n\n'
                                       f'@staticmethod\ndef decorated(x):\n    """{DOC}"""\n')
    write(tmp_path / "tests" / "test_mod.py", f'def test_add(a):\n    """{DOC}"""\n')
    write(tmp_path / "site-packages" / "lib.py", f'def lib(a):\n    """{DOC}"""\n')
    write(tmp_path / "py2.py", 'print "not python 3"\n')
    [row] = stdlib_rows(tmp_path)
    assert row["instruction"] == f"Write a Python function `add(a, b=1)` that does the following.\n\n{DOC}"
    assert extract_code(row["output"]) == f'def add(a, b=1):\n    """{DOC}"""\n    return round(a + b)\n'
    assert row["source"] == f"{tmp_path / 'pkg' / 'mod.py'}:1"


def test_stdlib_rows_are_valid_dialogs_whose_answers_define_the_function():
    rows = list(stdlib_rows(Path(sysconfig.get_paths()["stdlib"]) / "json"))
    assert rows
    for row in rows:
        to_dialog(row)
        name = row["instruction"].split("`")[1].split("(")[0]
        [function] = ast.parse(extract_code(row["output"])).body
        assert function.name == name
