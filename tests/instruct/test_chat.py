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
    expected = generate(model, [encode_prompt(tokenizer, d) for d in dialogs], 6, stop_ids=(tokenizer.eos_id,))
    assert answers == [tokenizer.decode(ids).strip() for ids in expected]
