import shutil

import pytest
import torch

from lit_codellama import Llama, ModelConfig


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tokenizer):
    """An untrained 1M-parameter model saved with its tokenizer, as the CLIs expect a checkpoint directory."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-model")
    Llama(ModelConfig.from_name("cl-1m", vocab_size=tokenizer.vocab_size)).save_pretrained(path)
    shutil.copyfile(tokenizer.path, path / "tokenizer.model")
    return path
