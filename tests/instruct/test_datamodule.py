import json

import pytest
import torch

from lit_codellama.chat import encode_dialog
from lit_codellama.errors import ConfigError
from lit_codellama.instruct.datamodule import InstructDataModule, split_dialogs
from lit_codellama.instruct.dataset import InstructSource, load_instruct
from lit_codellama.loss import IGNORE_INDEX


@pytest.fixture(scope="module")
def dialogs_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("instruct") / "arithmetic.jsonl"
    rows = [{"instruction": f"What is {a} plus {b}? Explain the sum.", "output": f"The sum is {a + b}, because addition."}
            for a in range(10) for b in range(8)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def make(corpus, dialogs_path, **kwargs):
    settings = dict(datasets=[InstructSource(path=dialogs_path)], data_dir=str(corpus.path), seq_len=64, batch_size=4,
                    val_fraction=0.1, dialog_val_fraction=0.1)
    dm = InstructDataModule(**{**settings, **kwargs})
    dm.setup("fit")
    return dm


def batches(dm, n):
    loader = iter(dm.train_dataloader())
    return [next(loader) for _ in range(n)]


def test_labels_are_next_tokens_or_ignored(corpus, dialogs_path):
    for batch in batches(make(corpus, dialogs_path), 10):
        ids, labels = batch["input_ids"], batch["labels"]
        assert ids.shape == labels.shape == (4, 64)
        learned = labels[:, :-1] != IGNORE_INDEX
        assert torch.equal(labels[:, :-1][learned], ids[:, 1:][learned])


def test_only_answer_tokens_are_learned_from_dialogs(corpus, dialogs_path, tokenizer):
    dm = make(corpus, dialogs_path, rehearsal={})
    learned = [t for b in batches(dm, 5) for row in b["labels"].tolist() for t in row if t != IGNORE_INDEX]
    text = tokenizer.decode(learned)
    assert "The sum is" in text and "because addition" in text
    assert "What is" not in text and "[INST]" not in text and "Explain" not in text


def test_rehearsal_shares_of_contexts_follow_the_weights(corpus, dialogs_path):
    dm = make(corpus, dialogs_path, rehearsal={"code": 0.3, "nl": 0.1}, batch_size=8)
    rows = [row for b in batches(dm, 40) for row in b["labels"]]
    with_prompt = sum(bool((row == IGNORE_INDEX).any()) for row in rows) / len(rows)
    assert 0.5 < with_prompt < 0.7  # 60% dialogs (each context holds prompts); rehearsal contexts learn every token


def test_validation_scores_every_answer_token_of_the_held_out_dialogs(corpus, dialogs_path, tokenizer):
    dm = make(corpus, dialogs_path)
    _, val = split_dialogs(load_instruct(InstructSource(path=dialogs_path)), 0.1)
    assert 0 < len(val) < 80
    expected = sum(sum(label != IGNORE_INDEX for label in encode_dialog(tokenizer, d)[1]) for d in val)
    scored = sum(int((b["labels"] != IGNORE_INDEX).sum()) for b in dm.val_dataloader())
    assert scored == expected


def test_dialogs_are_split_by_content_not_order(dialogs_path):
    dialogs = load_instruct(InstructSource(path=dialogs_path))
    train, val = split_dialogs(dialogs, 0.2)
    train_reversed, val_reversed = split_dialogs(dialogs[::-1], 0.2)
    assert val == val_reversed and sorted(map(str, train)) == sorted(map(str, train_reversed))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_resumed_stream_continues_with_the_next_batch(corpus, dialogs_path, num_workers):
    original = make(corpus, dialogs_path, num_workers=num_workers)
    full = batches(original, 6)
    resumed = make(corpus, dialogs_path, num_workers=num_workers)
    resumed.load_state_dict({**original.state_dict(), "batches_consumed": 4})
    for expected, got in zip(full[4:], batches(resumed, 2)):
        assert torch.equal(expected["input_ids"], got["input_ids"]) and torch.equal(expected["labels"], got["labels"])


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(rehearsal={"python": 0.1}), r"rehearsal sources \['python'\] are not sources of the corpus"),
        (dict(rehearsal={"code": 0.7, "nl": 0.3}), "must leave room for dialogs"),
        (dict(datasets=[]), "at least one instruction source"),
    ],
)
def test_impossible_mixtures_are_config_errors(corpus, dialogs_path, kwargs, error):
    with pytest.raises(ConfigError, match=error):
        make(corpus, dialogs_path, **kwargs)
