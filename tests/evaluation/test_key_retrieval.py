import math
import random

import pytest
import torch
from fakes import UniformModel

from lit_codellama.evaluation.key_retrieval import (
    QUESTION,
    TEMPLATES,
    answer,
    distractors,
    key_retrieval_accuracy,
    key_retrieval_prompts,
    key_retrieval_ranking,
    rank_candidates,
)


def test_prompts_fit_the_length_and_hide_the_key_at_its_position(tokenizer, stdlib_texts):
    prompts = key_retrieval_prompts(tokenizer, stdlib_texts, [128, 512], [0.0, 0.2, 0.4], n_per_cell=3)
    assert len(prompts) == 2 * 3 * 3
    for p in prompts:
        assert p.n_tokens <= p.length and p.n_tokens >= 0.8 * p.length
        assert p.prompt.endswith(QUESTION)
        definition = f"def my_function() -> int:\n    return {p.key}\n"
        assert p.prompt.count(definition) == 1
        where = p.prompt.index(definition) / len(p.prompt)
        assert where == pytest.approx(p.position, abs=0.1)
    assert prompts == key_retrieval_prompts(tokenizer, stdlib_texts, [128, 512], [0.0, 0.2, 0.4], n_per_cell=3)


def test_answer_is_the_integer_the_completion_starts_with():
    assert answer(" 4213\n") == 4213 and answer("-7)") == -7
    assert answer("my_function()") is None


def test_accuracy_per_cell(tiny_model, tokenizer, stdlib_texts, tmp_path):
    summary = key_retrieval_accuracy(tiny_model, tokenizer, [64, 128], [0.0, 0.4], n_per_cell=2,
                                     filler_texts=stdlib_texts, out_dir=tmp_path)
    assert [(c["length"], c["position"], c["n"]) for c in summary["cells"]] == [
        (64, 0.0, 2), (64, 0.4, 2), (128, 0.0, 2), (128, 0.4, 2)]
    assert summary["accuracy"] == 0.0  # an untrained model does not find the key
    assert (tmp_path / "results.jsonl").read_text().count('"correct": false') == 8


class Copier(UniformModel):
    """An ideal induction head: after a token it predicts, with near certainty, the token that followed the
    longest earlier repeat (at least 4 tokens) of the text just read; elsewhere every token is equally likely."""

    def forward(self, idx, mask=None):
        logits = torch.zeros(*idx.shape, self.vocab_size)
        for b, row in enumerate(idx.tolist()):
            for t in range(len(row)):
                best, follower = 3, None
                for s in range(t):
                    n = 0
                    while n <= s and row[s - n] == row[t - n]:
                        n += 1
                    if n > best:
                        best, follower = n, row[s + 1]
                if follower is not None:
                    logits[b, t, follower] = 30.0
        return logits


def test_one_hop_prompts_repeat_the_text_before_the_key():
    definition, question = TEMPLATES["one_hop"]
    assert question.strip() + " {key}" == definition.strip()


def test_a_perfect_copier_ranks_the_key_first_and_a_uniform_model_is_at_chance(tokenizer, stdlib_texts):
    settings = dict(lengths=[48, 96], positions=[0.0, 0.5], n_per_cell=2, k=4, filler_texts=stdlib_texts)
    copier = key_retrieval_ranking(Copier(tokenizer.vocab_size), tokenizer, **settings)
    assert copier["top1"] == 1.0
    assert all(c["nats_above_chance"] == pytest.approx(math.log(4), abs=1e-3) for c in copier["cells"])
    uniform = key_retrieval_ranking(UniformModel(tokenizer.vocab_size), tokenizer, **settings)
    # Candidates tie unless they tokenize to different counts: the key is first about 1/k of the time.
    assert uniform["top1"] <= 0.5 and all(abs(c["nats_above_chance"]) < 0.5 * math.log(4) for c in uniform["cells"])
    assert [(c["length"], c["position"], c["n"]) for c in copier["cells"]] == [
        (48, 0.0, 2), (48, 0.5, 2), (96, 0.0, 2), (96, 0.5, 2)]


def test_candidate_ranking_breaks_ties_at_random_and_measures_the_keys_share():
    assert rank_candidates([1.0, 2.0, 3.0]) == (1.0, pytest.approx(-math.log(1 + math.exp(-1) + math.exp(-2))))
    assert rank_candidates([2.0, 2.0, 1.0])[0] == 0.0
    top1, share = rank_candidates([2.0, 2.0, 2.0, 5.0])
    assert top1 == pytest.approx(1 / 3) and share == pytest.approx(-math.log(3 + math.exp(-3)))
    values = distractors(48213, 10, random.Random(0))
    assert len(set(values)) == 9 and 48213 not in values and all(10_000 <= v < 100_000 for v in values)
