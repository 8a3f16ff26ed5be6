import random
from pathlib import Path

import pytest
import yaml

from lit_codellama.data import build_corpus, load_recipe

WORDS = (
    "alpha beta gamma delta epsilon zeta theta kappa lambda sigma omega value index total count buffer parse render "
    "update window token stream packet record matrix vector offset"
).split()


def python_file(rng: random.Random, n_functions: int) -> str:
    """A distinct Python module: every function has its own name and a docstring of random words."""
    parts = [f'"""Module {rng.randrange(10**9)}: {" ".join(rng.choices(WORDS, k=12))}."""\n']
    for _ in range(n_functions):
        name = "_".join(rng.choices(WORDS, k=3)) + str(rng.randrange(10**6))
        args = ", ".join(rng.sample(WORDS, 3))
        body = "\n".join(f"    {w} = {rng.randrange(1000)} * {w}" for w in rng.sample(WORDS, 4))
        parts.append(
            f'def {name}({args}):\n    """{" ".join(rng.choices(WORDS, k=10))}."""\n{body}\n    return {args}\n'
        )
    return "\n\n".join(parts)


def prose(rng: random.Random, sentences: int) -> str:
    return " ".join(" ".join(rng.choices(WORDS, k=rng.randint(6, 14))).capitalize() + "." for _ in range(sentences))


def write_tree(root: Path, seed: int = 0, n_code: int = 60, n_text: int = 30) -> Path:
    """A small source tree: Python and C files of varied length, Markdown docs and plain text."""
    rng = random.Random(seed)
    for i in range(n_code):
        (root / "src" / f"pkg{i % 4}").mkdir(parents=True, exist_ok=True)
        (root / "src" / f"pkg{i % 4}" / f"mod{i}.py").write_text(python_file(rng, rng.choice([1, 2, 4, 12])))
    for i in range(n_code // 4):
        (root / "src" / f"ext{i}.c").write_text(f"/* {prose(rng, 2)} */\nint f{i}(int x) {{\n  return x * {i};\n}}\n")
    (root / "docs").mkdir(exist_ok=True)
    for i in range(n_text):
        (root / "docs" / f"guide{i}.md").write_text(f"# Guide {i}\n\n{prose(rng, rng.randint(3, 20))}\n")
        (root / "docs" / f"notes{i}.txt").write_text(prose(rng, rng.randint(3, 20)) + "\n")
    return root


def write_recipe(path: Path, root: Path, tokenizer: Path | None, **overrides) -> Path:
    """A recipe over `write_tree`'s tree: code 60%, NL about code 25% (docstrings + Markdown), NL 15%."""
    recipe = {
        "name": path.stem,
        "seed": 7,
        "sources": [
            {
                "name": "code",
                "weight": 0.6,
                "inputs": [{"kind": "files", "roots": [str(root / "src")], "include": ["*.py", "*.c"]}],
            },
            {
                "name": "nl_about_code",
                "weight": 0.25,
                "inputs": [
                    {"kind": "docstrings", "roots": [str(root / "src")], "include": ["*.py"]},
                    {"kind": "files", "roots": [str(root / "docs")], "include": ["*.md"]},
                ],
            },
            {
                "name": "nl",
                "weight": 0.15,
                "inputs": [{"kind": "files", "roots": [str(root / "docs")], "include": ["*.txt"]}],
            },
        ],
        "tokenizer": {"path": str(tokenizer)} if tokenizer else {"vocab_size": 600},
        **overrides,
    }
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.fixture(scope="session")
def recipe_file():
    """`write_recipe(path, root, tokenizer, **overrides)`: a recipe YAML over a `write_tree` tree."""
    return write_recipe


@pytest.fixture(scope="session")
def tree(tmp_path_factory) -> Path:
    return write_tree(tmp_path_factory.mktemp("tree"))


@pytest.fixture(scope="session")
def corpus(tmp_path_factory, tree, tokenizer_path):
    """The tree built with the shared tokenizer (no tokenizer training), in one process."""
    out = tmp_path_factory.mktemp("corpora")
    recipe = load_recipe(write_recipe(out / "tiny.yaml", tree, tokenizer_path))
    return build_corpus(recipe, out / "tiny", num_proc=1)
