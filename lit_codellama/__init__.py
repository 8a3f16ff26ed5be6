"""lit_codellama: Code Llama's recipe and ablations in PyTorch Lightning."""

from lit_codellama.config import ModelConfig
from lit_codellama.model import Llama

__all__ = ["ModelConfig", "Llama", "Tokenizer"]


def __getattr__(name: str):
    # The tokenizer imports sentencepiece; load it only when asked for.
    if name == "Tokenizer":
        from lit_codellama.tokenizer import Tokenizer

        return Tokenizer
    raise AttributeError(f"module 'lit_codellama' has no attribute {name!r}")
