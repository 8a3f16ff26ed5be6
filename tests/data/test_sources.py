import os
import subprocess
import sys
import textwrap

import pytest

from lit_codellama.data import DataError, build_corpus, load_recipe
from lit_codellama.data.recipe import Input
from lit_codellama.data.sources import docstrings, find_files, language_of, read_document


@pytest.mark.parametrize(
    "path, language",
    [
        ("a/b.py", "python"),
        ("x.h", "c"),
        ("x.cpp", "cpp"),
        ("x.JAVA", "java"),
        ("run.sh", "bash"),
        ("x.ts", "typescript"),
        ("README.md", "markdown"),
        ("LICENSE", "text"),
    ],
)
def test_language_comes_from_the_extension(path, language):
    assert language_of(path) == language


def test_patterns_match_paths_below_the_root_and_exclude_wins(tmp_path):
    for rel in ("a.py", "pkg/b.py", "pkg/tests/c.py", "pkg/d.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x = 1\n")
    inp = Input(roots=[str(tmp_path)], include=["*.py"], exclude=["*/tests/*"])
    assert [os.path.relpath(p, tmp_path) for p, _ in find_files(inp)] == ["a.py", "pkg/b.py"]


def test_docstrings_are_extracted_in_source_order():
    source = textwrap.dedent('''
        """Module doc."""
        class A:
            """Class doc."""
            def f(self):
                """Method doc."""
        async def g():
            """Coroutine doc."""
        def h():
            return 1
    ''')
    assert docstrings(source) == "Module doc.\n\nClass doc.\n\nMethod doc.\n\nCoroutine doc."


def test_unusable_files_are_skipped_with_a_reason(tmp_path):
    cases = {
        "binary.py": b"x = 1\n\0\0\0",
        "latin1.py": "caf\xe9 = 1\n".encode("latin-1"),
        "huge.py": b"x = 1\n" * 200,
        "blank.py": b"\n  \n",
        "minified.js": b"var a=1;" * 100,
        "py2.py": b'print "hello"\n',
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)

    def skip(name, kind="files"):
        return read_document(str(tmp_path / name), kind, max_file_bytes=1000, max_line_chars=500)[1]

    assert [skip(n) for n in ("binary.py", "latin1.py", "huge.py", "blank.py", "minified.js")] == [
        "binary",
        "not_utf8",
        "huge",
        "empty",
        "long_lines",
    ]
    assert skip("py2.py", "docstrings") == "unparsable"
    assert skip("vanished.py") == "unreadable"


def test_skipped_files_are_counted_in_the_corpus_report(tmp_path, tokenizer_path, recipe_file):
    src = tmp_path / "tree" / "src"
    src.mkdir(parents=True)
    for i in range(3):
        (src / f"ok{i}.py").write_text(f'def f{i}(x):\n    """Scale x by {i}."""\n    return {i} * x\n')
    (src / "binary.py").write_bytes(b"\0" * 10)
    (src / "latin1.py").write_bytes("caf\xe9 = 1\n".encode("latin-1"))
    (src / "huge.py").write_text("x = 1\n" * 100_000)
    (tmp_path / "tree" / "docs").mkdir()
    (tmp_path / "tree" / "docs" / "a.md").write_text("Some documentation about the code.\n")
    (tmp_path / "tree" / "docs" / "a.txt").write_text("Some plain text.\n")
    recipe = load_recipe(recipe_file(tmp_path / "r.yaml", tmp_path / "tree", tokenizer_path, max_file_bytes=100_000))
    report = build_corpus(recipe, tmp_path / "out", num_proc=1).report
    assert report["sources"]["code"]["skipped"] == {"huge": 1, "binary": 1, "not_utf8": 1}
    assert report["sources"]["nl_about_code"]["skipped"] == {"huge": 1, "binary": 1, "not_utf8": 1}


def test_a_source_without_documents_is_a_clear_error(tmp_path, tree, tokenizer_path, recipe_file):
    path = recipe_file(tmp_path / "r.yaml", tree, tokenizer_path)
    recipe = load_recipe(path)
    recipe = recipe.replace(
        sources=[
            *recipe.to_dict()["sources"][:2],
            {"name": "nl", "weight": 0.15, "inputs": [{"roots": [str(tree / "docs")], "include": ["*.tex"]}]},
        ]
    )
    with pytest.raises(DataError, match=r"source 'nl' of recipe 'r' has no usable documents \(0 candidate files"):
        build_corpus(recipe, tmp_path / "out", num_proc=1)
    assert not (tmp_path / "out").exists()


@pytest.mark.timeout(150)
def test_hub_source_fails_fast_and_clearly_when_offline(tmp_path):
    # A fresh process: the hub libraries read HF_HUB_OFFLINE when they are imported.
    argv = ["build", "--recipe", "the-stack-smol", "--out", str(tmp_path / "out")]
    code = f"from lit_codellama.data.cli import main; main({argv!r})"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 2
    assert "source 'python'" in done.stderr and "bigcode/the-stack-smol" in done.stderr
    assert "HF_HUB_OFFLINE is set" in done.stderr and "use a `files` input over a local copy" in done.stderr


@pytest.mark.timeout(60)
def test_hub_source_fails_fast_and_clearly_when_the_endpoint_is_unreachable(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(
        DataError,
        match=r"source 'python': http://127.0.0.1:9 cannot serve 'bigcode/the-stack-smol'"
        r".*use a `files` input over a local copy",
    ):
        build_corpus(load_recipe("the-stack-smol"), tmp_path / "out")
