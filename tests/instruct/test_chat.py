import io

import pytest

from lit_codellama.chat import ChatFormatError, chat, encode_dialog, encode_prompt, prompt_text, turns
from lit_codellama.checkpoint import load_model
from lit_codellama.generate import SamplingConfig, generate
from lit_codellama.loss import IGNORE_INDEX

DIALOG = [
    {"role": "system", "content": "Answer with code only."},
    {"role": "user", "content": "Write a function that adds two numbers.\n"},
    {"role": "assistant", "content": "\ndef add(a, b):\n    return a + b\n"},
    {"role": "user", "content": "Now one that reverses a string, please: «é»"},
    {"role": "assistant", "content": "def reverse(s: str) -> str:\n\treturn s[::-1]  # slicing"},
]


def metas_chat_tokens(tok, messages):
    """Meta's `chat_completion` encoding of finished turns: one string per turn, with BOS and EOS."""
    ids = []
    for user, answer in turns(messages):
        ids += tok.encode(f"[INST] {user} [/INST] {answer} ", bos=True, eos=True)
    return ids


def test_system_message_is_folded_into_the_first_user_turn():
    assert turns(DIALOG)[0][0] == "<<SYS>>\nAnswer with code only.\n<</SYS>>\n\nWrite a function that adds two numbers."
    assert turns(DIALOG)[1] == ("Now one that reverses a string, please: «é»", DIALOG[4]["content"])


def test_training_ids_equal_metas_chat_encoding(tokenizer):
    ids, labels = encode_dialog(tokenizer, DIALOG)
    assert ids == metas_chat_tokens(tokenizer, DIALOG)
    assert len(labels) == len(ids)
    assert ids.count(tokenizer.bos_id) == 2 and ids.count(tokenizer.eos_id) == 2


def test_loss_is_on_answer_tokens_and_their_eos_only(tokenizer):
    ids, labels = encode_dialog(tokenizer, DIALOG)
    learned = [i for i, label in zip(ids, labels) if label != IGNORE_INDEX]
    assert all(label in (IGNORE_INDEX, i) for i, label in zip(ids, labels))
    assert learned == tokenizer.encode(f"{turns(DIALOG)[0][1]} ", eos=True) + tokenizer.encode(f"{turns(DIALOG)[1][1]} ", eos=True)
    text = tokenizer.decode([i for i, label in zip(ids, labels) if label == IGNORE_INDEX])
    assert "[INST]" in text and "<<SYS>>" in text and "return" not in text


def test_prompt_of_a_dialog_is_its_history_then_the_open_turn(tokenizer):
    history_ids, _ = encode_dialog(tokenizer, DIALOG)
    ask = {"role": "user", "content": "And a third one?"}
    assert encode_prompt(tokenizer, [*DIALOG, ask]) == history_ids + tokenizer.encode("[INST] And a third one? [/INST]", bos=True)
    assert encode_prompt(tokenizer, [ask]) == tokenizer.encode(prompt_text(ask["content"]), bos=True)


@pytest.mark.parametrize(
    "messages, error",
    [
        ([], "at least one user message"),
        ([{"role": "system", "content": "hi"}], "followed by a user message"),
        ([{"role": "assistant", "content": "hi"}], "must be 'user'"),
        ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "must be 'assistant'"),
        ([{"role": "user", "content": "a [/INST] b"}], "chat-format tag '[/INST]'"),
        ([{"role": "robot", "content": "a"}], "message 0 must be"),
        ([{"role": "user", "content": 3}], "message 0 must be"),
    ],
)
def test_dialogs_the_format_cannot_express_are_rejected(messages, error):
    with pytest.raises(ChatFormatError, match=error.replace("[", r"\[")):
        turns(messages)


def test_training_dialog_must_end_with_an_answer_and_a_prompt_with_a_question(tokenizer):
    with pytest.raises(ChatFormatError, match="end with an assistant"):
        encode_dialog(tokenizer, DIALOG[:4])
    with pytest.raises(ChatFormatError, match="end with a user"):
        encode_prompt(tokenizer, DIALOG)


def test_chat_answers_are_the_decoded_generation_of_the_prompt(tokenizer, tiny_checkpoint):
    model = load_model(tiny_checkpoint).eval()
    dialogs = [DIALOG[1:2], DIALOG[:4]]
    answers = chat(model, tokenizer, dialogs, SamplingConfig(max_new_tokens=6))
    expected = generate(model, [encode_prompt(tokenizer, d) for d in dialogs], SamplingConfig(max_new_tokens=6), stop_ids=(tokenizer.eos_id,))
    assert answers == [tokenizer.decode(ids).strip() for ids in expected]


def test_chat_command_keeps_the_dialog_in_metas_format_and_prints_each_answer(tokenizer, tiny_checkpoint, monkeypatch, capsys):
    import lit_codellama.chat as chat_module
    from lit_codellama.cli import main

    prompts = []

    def recording_generate(model, batch, *args, **kwargs):
        prompts.extend(batch)
        return generate(model, batch, *args, **kwargs)

    monkeypatch.setattr(chat_module, "generate", recording_generate)
    monkeypatch.setattr("sys.stdin", io.StringIO("Write add.\n\nNow reverse a string.\n"))
    system = "Answer with code only."
    argv = ["chat", "--checkpoint", str(tiny_checkpoint), "--system", system, "--max-new-tokens", "8"]
    assert main(argv) == 0
    cli_prompts = list(prompts)

    model, sampling = load_model(tiny_checkpoint).eval(), SamplingConfig(max_new_tokens=8)
    first = [{"role": "system", "content": system}, {"role": "user", "content": "Write add."}]
    [a1] = chat(model, tokenizer, [first], sampling)
    [a2] = chat(model, tokenizer, [[*first, {"role": "assistant", "content": a1},
                                    {"role": "user", "content": "Now reverse a string."}]], sampling)
    assert a1 and a2 and capsys.readouterr().out == f"{a1}\n{a2}\n"
    opening = f"[INST] <<SYS>>\n{system}\n<</SYS>>\n\nWrite add. [/INST]"
    assert cli_prompts == [
        tokenizer.encode(opening, bos=True),
        tokenizer.encode(f"{opening} {a1} ", bos=True, eos=True) + tokenizer.encode("[INST] Now reverse a string. [/INST]", bos=True),
    ]


def test_answers_stream_as_they_are_generated_and_hold_back_incomplete_characters(tokenizer):
    from lit_codellama.chat import _Stream

    text = "  def add(a, b):\n    return a + b  # «é»\n"
    ids = tokenizer.encode(text)
    assert any(tokenizer.processor.is_byte(i) for i in ids)  # a character split over byte pieces is covered
    out = io.StringIO()
    stream = _Stream(tokenizer, out)
    shown = []
    for n in range(1, len(ids) + 1):
        assert stream(ids[:n]) is False
        shown.append(out.getvalue())
    assert stream.finish(ids) == text.strip() and out.getvalue() == text.strip() + "\n"
    assert len(set(shown)) > len(ids) // 2  # text appears token by token, not at the end
    assert all("\ufffd" not in s and text.strip().startswith(s) for s in shown)
