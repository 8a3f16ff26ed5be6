import sysconfig
from pathlib import Path

import pytest

from lit_codellama.evaluation.sandbox import Sandbox
from lit_codellama.tokenizer import Tokenizer, train_tokenizer

STDLIB = Path(sysconfig.get_paths()["stdlib"])
CORPUS = ("argparse.py", "ast.py", "dataclasses.py", "functools.py", "textwrap.py", "json/decoder.py")


@pytest.fixture(scope="session")
def stdlib_texts() -> list[str]:
    """A small, always-present code corpus: a few modules of the running Python's standard library."""
    return [(STDLIB / name).read_text(encoding="utf-8") for name in CORPUS]


@pytest.fixture(scope="session")
def tokenizer_path(tmp_path_factory, stdlib_texts) -> Path:
    """A 1024-piece BPE model with Code Llama's infilling pieces, trained on `stdlib_texts` (< 1 s)."""
    return train_tokenizer(stdlib_texts, tmp_path_factory.mktemp("tokenizer") / "stdlib", vocab_size=1024)


@pytest.fixture(scope="session")
def tokenizer(tokenizer_path) -> Tokenizer:
    return Tokenizer(tokenizer_path)


@pytest.fixture(scope="session")
def sandbox() -> Sandbox:
    """The evaluation sandbox with bubblewrap isolation (it refuses to start without)."""
    return Sandbox()
