"""The data pipeline: recipes -> a cleaned, tokenized corpus -> packed (FIM) batches in a LightningDataModule."""

from lit_codellama.data.corpus import Corpus, build_corpus, load_corpus
from lit_codellama.data.recipe import DataError, Recipe, load_recipe

__all__ = ["CodeDataModule", "Corpus", "DataError", "Recipe", "build_corpus", "load_corpus", "load_recipe"]


def __getattr__(name: str):
    # The DataModule imports Lightning; load it only when asked for, so the CLI starts fast.
    if name == "CodeDataModule":
        from lit_codellama.data.datamodule import CodeDataModule

        return CodeDataModule
    raise AttributeError(f"module 'lit_codellama.data' has no attribute {name!r}")
