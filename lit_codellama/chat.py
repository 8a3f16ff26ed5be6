"""The Llama 2 chat format that Code Llama - Instruct is trained and prompted with.

    <s>[INST] <<SYS>>\\n{system}\\n<</SYS>>\\n\\n{user_1} [/INST] {answer_1} </s><s>[INST] {user_2} [/INST] {answer_2} </s>...

A dialog is a list of `{"role": "system" | "user" | "assistant", "content": str}` messages: an optional system
message, then user and assistant turns alternating. Meta's `chat_completion` encodes each finished turn as the one
string `f"[INST] {user} [/INST] {answer} "` with BOS and EOS, and the open last turn as `f"[INST] {user} [/INST]"`.
For training we encode a turn's prompt and answer separately (as llama-recipes does) so that labels can mask the
prompt; the ids are Meta's, because a stripped answer starts a new sentencepiece word.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

import torch

from lit_codellama.errors import LitCodeLlamaError
from lit_codellama.generate import SamplingConfig, generate
from lit_codellama.loss import IGNORE_INDEX
from lit_codellama.model import Llama
from lit_codellama.tokenizer import Tokenizer

B_INST, E_INST = "[INST]", "[/INST]"
B_SYS, E_SYS = "<<SYS>>\n", "\n<</SYS>>\n\n"
TAGS = (B_INST, E_INST, "<<SYS>>", "<</SYS>>")
ROLES = ("system", "user", "assistant")


class Message(TypedDict):
    role: str
    content: str


class ChatFormatError(LitCodeLlamaError, ValueError):
    """A dialog that the chat format cannot express; the message says which message and why."""


def turns(messages: Sequence[Message]) -> list[tuple[str, str | None]]:
    """(user, answer) pairs, the system message folded into the first user turn as Meta does; the last answer is
    None when the dialog ends with a user message."""
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES or not isinstance(message.get("content"), str):
            raise ChatFormatError(f"message {i} must be {{'role': one of {ROLES}, 'content': str}}, got {message!r}")
        if tag := next((t for t in TAGS if t in message["content"]), None):
            raise ChatFormatError(f"message {i} ({message['role']}) contains the chat-format tag {tag!r}")
    messages = list(messages)
    if messages and messages[0]["role"] == "system":
        if len(messages) < 2:
            raise ChatFormatError("a system message must be followed by a user message")
        system, first = messages[0], messages[1]
        messages = [{"role": first["role"], "content": B_SYS + system["content"] + E_SYS + first["content"]}, *messages[2:]]
    if not messages:
        raise ChatFormatError("a dialog needs at least one user message")
    for i, message in enumerate(messages):
        expected = "user" if i % 2 == 0 else "assistant"
        if message["role"] != expected:
            raise ChatFormatError(
                f"turn {i} is {message['role']!r} but must be {expected!r}: after an optional system message, "
                "user and assistant messages alternate, starting with user"
            )
    contents = [m["content"].strip() for m in messages]
    return list(zip(contents[::2], [*contents[1::2], None]))


def prompt_text(user: str) -> str:
    """One open turn as text: what the model continues (encoded with BOS)."""
    return f"{B_INST} {user.strip()} {E_INST}"


def encode_dialog(tok: Tokenizer, messages: Sequence[Message]) -> tuple[list[int], list[int]]:
    """Token ids of a finished dialog and its labels: the ids on answer tokens (with each answer's EOS), IGNORE_INDEX
    on BOS, prompts and system message. Labels align with ids (shift them for next-token prediction)."""
    pairs = turns(messages)
    if pairs[-1][1] is None:
        raise ChatFormatError("a training dialog must end with an assistant message")
    ids: list[int] = []
    labels: list[int] = []
    for user, answer in pairs:
        prompt = tok.encode(prompt_text(user), bos=True)
        completion = tok.encode(f"{answer} ", eos=True)
        ids += prompt + completion
        labels += [IGNORE_INDEX] * len(prompt) + completion
    return ids, labels


def encode_prompt(tok: Tokenizer, messages: Sequence[Message]) -> list[int]:
    """Token ids that ask the model for the next answer of a dialog that ends with a user message (Meta's
    `chat_completion` prompt)."""
    pairs = turns(messages)
    if pairs[-1][1] is not None:
        raise ChatFormatError("a prompt dialog must end with a user message")
    ids: list[int] = []
    for user, answer in pairs[:-1]:
        ids += tok.encode(f"{prompt_text(user)} {answer} ", bos=True, eos=True)
    return ids + tok.encode(prompt_text(pairs[-1][0]), bos=True)


def chat(
    model: Llama,
    tok: Tokenizer,
    dialogs: Sequence[Sequence[Message]],
    sampling: SamplingConfig = SamplingConfig(max_new_tokens=512),
    generator: torch.Generator | None = None,
) -> list[str]:
    """The assistant's next answer to each dialog, generated as one batch until EOS."""
    prompts = [encode_prompt(tok, dialog) for dialog in dialogs]
    s, generator = sampling, generator or sampling.generator(model.output.weight.device)
    outputs = generate(model, prompts, s.max_new_tokens, s.temperature, s.top_p, (tok.eos_id,), generator=generator)
    return [tok.decode(ids).strip() for ids in outputs]
