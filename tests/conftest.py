import sysconfig
from pathlib import Path

import pytest

from lit_codellama.tokenizer import Tokenizer, train_tokenizer

STDLIB = Path(sysconfig.get_paths()["stdlib"])
CORPUS = ("argparse.py", "ast.py", "dataclasses.py", "functools.py", "textwrap.py", "json/decoder.py")


@pytest.fixture(scope="session")
def tokenizer_path(tmp_path_factory) -> Path:
    """A 1024-piece BPE model with Code Llama's infilling pieces, trained on a few stdlib modules (< 1 s)."""
    texts = ((STDLIB / name).read_text(encoding="utf-8") for name in CORPUS)
    return train_tokenizer(texts, tmp_path_factory.mktemp("tokenizer") / "stdlib", vocab_size=1024)


@pytest.fixture(scope="session")
def tokenizer(tokenizer_path) -> Tokenizer:
    return Tokenizer(tokenizer_path)
