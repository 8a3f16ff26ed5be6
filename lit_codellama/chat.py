"""The Llama 2 chat format that Code Llama - Instruct is trained and prompted with.

    <s>[INST] <<SYS>>\\n{system}\\n<</SYS>>\\n\\n{user_1} [/INST] {answer_1} </s><s>[INST] {user_2} [/INST] {answer_2} </s>...

A dialog is a list of `{"role": "system" | "user" | "assistant", "content": str}` messages: an optional system
message, then user and assistant turns alternating. Meta's `chat_completion` encodes each finished turn as the one
string `f"[INST] {user} [/INST] {answer} "` with BOS and EOS, and the open last turn as `f"[INST] {user} [/INST]"`.
For training we encode a turn's prompt and answer separately (as llama-recipes does) so that labels can mask the
prompt; the ids are Meta's, because a stripped answer starts a new sentencepiece word.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from typing import TextIO, TypedDict

import torch

from lit_codellama.errors import LitCodeLlamaError
from lit_codellama.generate import SamplingConfig, add_model_arguments, generate, load_from_args
from lit_codellama.loss import IGNORE_INDEX
from lit_codellama.model import Llama
from lit_codellama.tokenizer import Tokenizer

B_INST, E_INST = "[INST]", "[/INST]"
B_SYS, E_SYS = "<<SYS>>\n", "\n<</SYS>>\n\n"
TAGS = (B_INST, E_INST, "<<SYS>>", "<</SYS>>")
ROLES = ("system", "user", "assistant")


# The same format as a transformers chat template (written into exported tokenizer_config.json): rendered, then
# tokenized without added special tokens, it gives `encode_prompt`'s ids (a test checks it). "<s>" and "</s>" in the
# text become BOS and EOS; each span between them is a separate sentencepiece encode, as in Meta's code.
HF_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('after an optional system message, user and assistant messages alternate') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% else %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)


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
    outputs = generate(model, prompts, sampling, (tok.eos_id,), generator=generator)  # generator: from sampling.seed
    return [tok.decode(ids).strip() for ids in outputs]


# ---------------------------------------------------------------------------------------------- command


class _Stream:
    """Writes an answer to `out` while it is generated: `generate` calls it after each new token (as `should_stop`;
    it never stops). It writes what `chat` returns, stripped: whitespace waits until text follows it, and an
    incomplete UTF-8 sequence (decoded as U+FFFD) until its last byte."""

    def __init__(self, tok: Tokenizer, out: TextIO) -> None:
        self.tok, self.out, self.written = tok, out, ""

    def __call__(self, tokens: list[int]) -> bool:
        text = self.tok.decode(tokens).strip()
        if not text.endswith("\ufffd"):
            self._write(text)
        return False

    def finish(self, tokens: list[int]) -> str:
        answer = self.tok.decode(tokens).strip()
        self._write(answer)
        self.out.write("\n")
        self.out.flush()
        return answer

    def _write(self, text: str) -> None:
        if text.startswith(self.written) and len(text) > len(self.written):
            self.out.write(text[len(self.written) :])
            self.out.flush()
            self.written = text


def converse(
    model: Llama,
    tok: Tokenizer,
    lines: Iterable[str],
    out: TextIO,
    sampling: SamplingConfig = SamplingConfig(max_new_tokens=512),
    system: str | None = None,
) -> list[Message]:
    """A multi-turn dialog: each non-empty line is a user message, each answer is streamed to `out` and ended with a
    newline. Returns the dialog."""
    dialog: list[Message] = [{"role": "system", "content": system}] if system else []
    s, generator = sampling, sampling.generator(model.output.weight.device)
    for line in lines:
        if not line.strip():
            continue
        dialog.append({"role": "user", "content": line.rstrip("\n")})
        stream = _Stream(tok, out)
        prompt = encode_prompt(tok, dialog)
        [ids] = generate(model, [prompt], s, (tok.eos_id,), stream, generator)
        dialog.append({"role": "assistant", "content": stream.finish(ids)})
    return dialog


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lit_codellama chat",
        description="Chat with an Instruct checkpoint in Llama 2's chat format ([INST], <<SYS>>): each line of standard "
        "input is a user message and each answer is streamed to standard output; the dialog is kept across turns.",
    )
    add_model_arguments(parser, max_new_tokens=512)
    parser.add_argument("--system", help="system prompt (folded into the first user turn, as Meta does)")
    args = parser.parse_args(argv)
    model, tok = load_from_args(args)
    if sys.stdin.isatty():
        print("one message per line; end with Ctrl-D", file=sys.stderr)
    converse(model, tok, sys.stdin, sys.stdout, SamplingConfig.from_args(args), args.system)
    return 0
