"""Code Llama - Instruct: the Llama 2 chat format, instruction datasets, and self-instruct with execution feedback."""

from lit_codellama.instruct.chat import ChatFormatError, Message, chat, encode_dialog, encode_prompt, prompt_text
from lit_codellama.instruct.datamodule import InstructDataModule
from lit_codellama.instruct.dataset import InstructSource, load_instruct
from lit_codellama.instruct.prompts import evaluate_instruct, extract_code, instruct_problems

__all__ = [
    "ChatFormatError",
    "InstructDataModule",
    "InstructSource",
    "Message",
    "chat",
    "encode_dialog",
    "encode_prompt",
    "evaluate_instruct",
    "extract_code",
    "instruct_problems",
    "load_instruct",
    "prompt_text",
]
