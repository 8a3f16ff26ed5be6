import ast
import shutil

import pytest
import torch

from lit_codellama import Llama, ModelConfig
from lit_codellama.checkpoint import save_model
from lit_codellama.data import build_corpus
from lit_codellama.data.recipe import Decontamination, Dedup, Input, Recipe, Source, TokenizerSpec


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tokenizer):
    """An untrained 1M-parameter model saved with its tokenizer, as the CLIs expect a checkpoint directory."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-model")
    save_model(Llama(ModelConfig.from_name("cl-1m", vocab_size=tokenizer.vocab_size)), path)
    shutil.copyfile(tokenizer.path, path / "tokenizer.model")
    return path


@pytest.fixture(scope="session")
def corpus(tmp_path_factory, stdlib_texts, tokenizer_path):
    """A two-source corpus with the shared tokenizer: `code`, the top-level definitions of a few stdlib modules, one
    file each; `nl`, their docstrings."""
    root = tmp_path_factory.mktemp("corpus-tree")
    (root / "code").mkdir()
    (root / "nl").mkdir()
    for i, text in enumerate(stdlib_texts):
        tree = ast.parse(text)
        for j, node in enumerate(n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))):
            (root / "code" / f"mod{i}_{j}.py").write_text(ast.get_source_segment(text, node))
            if doc := ast.get_docstring(node):
                (root / "nl" / f"doc{i}_{j}.txt").write_text(doc)
    recipe = Recipe(
        name="instruct-test",
        sources=[Source("code", 0.8, [Input(roots=[str(root / "code")])]), Source("nl", 0.2, [Input(roots=[str(root / "nl")])])],
        tokenizer=TokenizerSpec(path=str(tokenizer_path)),
        dedup=Dedup(near=False),
        decontamination=Decontamination(enabled=False),
    )
    return build_corpus(recipe, tmp_path_factory.mktemp("corpora") / "corpus", num_proc=1)
