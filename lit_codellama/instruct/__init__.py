"""Code Llama - Instruct: instruction datasets, the instruction-tuning data module, and self-instruct with execution
feedback. The chat format itself is `lit_codellama.chat`; instruct-format evaluation is `evaluation.instruct`."""

from lit_codellama.instruct.datamodule import InstructDataModule
from lit_codellama.instruct.dataset import InstructSource, load_instruct

__all__ = ["InstructDataModule", "InstructSource", "load_instruct"]
