"""Likelihood metrics against a direct computation from the model's logits."""

import math

import pytest
import torch
import torch.nn.functional as F

from lit_codellama.evaluation.data import EvalInputError
from lit_codellama.evaluation.humaneval import humaneval_problems
from lit_codellama.evaluation.infilling import infilling_problems
from lit_codellama.evaluation.likelihood import (
    humaneval_solution_loss,
    infilling_middle_loss,
    perplexity,
    perplexity_by_context_length,
    target_nll,
)


def direct_nll(model, ids, start):
    with torch.no_grad():
        logits = model(torch.tensor([ids]))[0].float()
    return F.cross_entropy(logits[start - 1 : -1], torch.tensor(ids[start:]), reduction="sum").item()


def test_target_nll_matches_the_logits_whatever_the_batching(tiny_model):
    g = torch.Generator().manual_seed(0)
    shapes = [(20, 5), (7, 1), (33, 30), (12, 11)]  # (length, first target)
    sequences = [(torch.randint(0, 1000, (n,), generator=g).tolist(), s) for n, s in shapes]
    one_by_one = target_nll(tiny_model, sequences, batch_size=1)
    batched = target_nll(tiny_model, sequences, batch_size=4)
    for (ids, start), (nll_1, targets_1), (nll_b, targets_b) in zip(sequences, one_by_one, batched, strict=True):
        assert targets_1 == targets_b == ids[start:]
        assert nll_1 == pytest.approx(direct_nll(tiny_model, ids, start), rel=1e-4)
        assert nll_b == pytest.approx(nll_1, rel=1e-4)


def test_untrained_model_is_near_uniform_over_the_vocabulary(tiny_model, tokenizer):
    metrics = humaneval_solution_loss(tiny_model, tokenizer, limit=4)
    assert metrics["loss"] == pytest.approx(math.log(tokenizer.vocab_size), abs=0.2)
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]))
    bits = metrics["loss"] * metrics["n_tokens"] / math.log(2)
    assert metrics["bits_per_byte"] == pytest.approx(bits / metrics["n_bytes"])
    solution_tokens = sum(len(tokenizer.encode(p.reference)) for p in humaneval_problems(4))
    assert abs(metrics["n_tokens"] - solution_tokens) <= 4  # one boundary token per problem at most


def test_middle_loss_scores_the_middle_and_the_end_of_infilling(tiny_model, tokenizer):
    psm = infilling_middle_loss(tiny_model, tokenizer, "single-line", "psm", limit=5)
    spm = infilling_middle_loss(tiny_model, tokenizer, "single-line", "spm", limit=5)
    middles = [p.reference for p in infilling_problems("single-line", limit=5)]
    assert psm["n_tokens"] == sum(len(tokenizer.encode_infilling(m)) + 1 for m in middles)  # + <EOT>
    assert psm["task"] == "infilling-middle-loss-single-line-psm" and math.isfinite(spm["loss"])


def test_sliding_windows_score_every_token_once(tiny_model, tokenizer, stdlib_texts):
    text = stdlib_texts[0][:4000]
    n = len(tokenizer.encode(text, bos=True))
    plain = perplexity(tiny_model, tokenizer, [text], context_length=64, batch_size=16)
    assert plain["n_windows"] == n // 64 and plain["n_tokens"] == (n // 64) * 63
    strided = perplexity(tiny_model, tokenizer, [text], context_length=64, stride=16, batch_size=16)
    assert strided["n_tokens"] == 63 + ((n - 64) // 16) * 16
    assert strided["loss"] == pytest.approx(plain["loss"], rel=0.05)  # an untrained model barely uses context


def test_perplexity_by_context_length_uses_the_same_texts_for_every_length(tiny_model, tokenizer, stdlib_texts,
                                                                            tmp_path):
    short = "x = 1\n"
    texts = [short, *(t[:3000] for t in stdlib_texts[:2])]
    summary = perplexity_by_context_length(tiny_model, tokenizer, texts, [128, 32, 300], batch_size=8, out_dir=tmp_path)
    assert [row["context_length"] for row in summary["by_length"]] == [32, 128, 300]  # 300 > the model's block_size
    assert {row["n_texts"] for row in summary["by_length"]} == {2}
    assert (tmp_path / "results.jsonl").read_text().count("\n") == 3
    with pytest.raises(EvalInputError, match="no text has 100000 tokens"):
        perplexity_by_context_length(tiny_model, tokenizer, stdlib_texts[:1], [100_000])
