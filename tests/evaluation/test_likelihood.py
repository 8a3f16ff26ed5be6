"""Likelihood metrics against a direct computation from the model's logits."""

import math
import statistics
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from fakes import UniformModel

from lit_codellama.evaluation.data import EvalInputError
from lit_codellama.evaluation.humaneval import humaneval_problems
from lit_codellama.evaluation.infilling import infilling_problems
from lit_codellama.evaluation.likelihood import (
    context_gain,
    humaneval_solution_loss,
    infilling_likelihood,
    infilling_middle_loss,
    perplexity,
    perplexity_by_context_length,
    target_nll,
    target_scores,
    token_losses,
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


def test_target_scores_accuracy_is_the_argmax_of_the_full_logits(tiny_model):
    g = torch.Generator().manual_seed(1)
    sequences = [(torch.randint(0, 1000, (n,), generator=g).tolist(), s) for n, s in [(40, 3), (25, 24), (60, 30)]]
    for (ids, start), (nll, correct) in zip(sequences, target_scores(tiny_model, sequences, batch_size=3)):
        with torch.no_grad():
            logits = tiny_model(torch.tensor([ids]))[0, start - 1 : -1]
        expected = F.cross_entropy(logits.float(), torch.tensor(ids[start:]), reduction="none")
        torch.testing.assert_close(nll, expected, rtol=1e-4, atol=1e-5)
        assert correct.tolist() == (logits.argmax(-1) == torch.tensor(ids[start:])).tolist()


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


class ContextCountingModel(UniformModel):
    """A stand-in whose loss is known: it predicts token (x + 1) % V after x, and the log-probability it gives that
    token is exactly -1/n, where n is the number of tokens the position may attend to (itself included)."""

    def forward(self, idx, mask=None):
        B, T = idx.shape
        visible = mask.sum(-1).double() if mask is not None else torch.arange(1, T + 1, dtype=torch.float64)
        p = torch.exp(-1.0 / visible)  # (T,)
        true_logit = torch.log(p * (self.vocab_size - 1) / (1 - p))  # softmax over V with the rest at 0
        logits = torch.zeros(B, T, self.vocab_size, dtype=torch.float64)
        logits.scatter_(2, ((idx + 1) % self.vocab_size).unsqueeze(-1), true_logit.expand(B, T).unsqueeze(-1))
        return logits


def test_context_gain_compares_the_same_tokens_with_full_and_capped_context(tmp_path):
    V, W, M = 50, 8, 40
    tok = SimpleNamespace(encode=lambda text, bos: [i % V for i in range(len(text))])
    summary = context_gain(ContextCountingModel(V), tok, ["x" * 100] * 2, window=W, max_length=M, stride=1,
                           out_dir=tmp_path)
    assert [(b["position"], b["end"]) for b in summary["buckets"]] == [(8, 16), (16, 32), (32, 40)]
    for b in summary["buckets"]:
        targets = range(b["position"], b["end"])  # a target at position t has t tokens before it
        assert b["loss_full"] == pytest.approx(statistics.fmean(1 / t for t in targets), abs=2e-5)  # fp32 softmax
        assert b["loss_capped"] == pytest.approx(1 / W, abs=2e-5)
        assert b["context_gain"] == pytest.approx(statistics.fmean(1 / W - 1 / t for t in targets), abs=2e-5)
    curve = pd.read_csv(tmp_path / "curve.csv")
    assert curve["position"].tolist() == list(range(1, M))
    np.testing.assert_allclose(curve["loss_full"], [1 / t for t in range(1, M)], atol=2e-5)
    np.testing.assert_allclose(curve["loss_capped"], [1 / min(t, W) for t in range(1, M)], atol=2e-5)
    strided = context_gain(ContextCountingModel(V), tok, ["x" * 100], window=W, max_length=M, stride=3)
    for b in strided["buckets"]:  # every capped token sees between W - 3 + 1 and W tokens
        assert 1 / W - 1e-6 < b["loss_capped"] < 1 / (W - 2) + 1e-6 and b["loss_capped"] > 1 / W + 1e-3
    with pytest.raises(EvalInputError, match="texts of at least 40 tokens; 1 of 2 are shorter"):
        context_gain(ContextCountingModel(V), tok, ["x" * 100, "x" * 10], window=W, max_length=M)


def test_a_capped_context_equals_scoring_each_token_in_its_own_window(tiny_model, tokenizer, stdlib_texts):
    ids = tokenizer.encode(stdlib_texts[0], bos=True)[:120]
    full, capped = token_losses(tiny_model, ids), token_losses(tiny_model, ids, window=16, batch_size=3)
    for target in (5, 16, 17, 60, 119):  # before, at and beyond the window
        window_start = max(0, target - 16)
        assert capped[target - 1].item() == pytest.approx(direct_nll(tiny_model, ids[window_start : target + 1],
                                                                     target - window_start), rel=1e-4)
        assert full[target - 1].item() == pytest.approx(direct_nll(tiny_model, ids[: target + 1], target), rel=1e-4)
    torch.testing.assert_close(full[:16], capped[:16])  # up to the window, both see every token before them


def test_infilling_bits_per_char_and_suffix_gain_count_exactly_the_tokens_of_each_layout(tokenizer):
    problems = infilling_problems("single-line", limit=6)
    summary = infilling_likelihood(UniformModel(tokenizer.vocab_size), tokenizer, limit=6)
    chars = sum(len(p.reference) for p in problems)
    bits = math.log2(tokenizer.vocab_size)
    psm_tokens = sum(len(tokenizer.encode_infilling(p.reference)) for p in problems)  # the middle, without <EOT>
    prefix_only_tokens = 0
    for p in problems:
        context, full = tokenizer.encode(p.prompt, bos=True), tokenizer.encode(p.prompt + p.reference, bos=True)
        shared = next(i for i, (a, b) in enumerate(zip(context + [-1], full)) if a != b)
        prefix_only_tokens += len(full) - shared
    assert summary["n_chars"] == chars
    assert summary["prefix_only_bits_per_char"] == pytest.approx(prefix_only_tokens * bits / chars)
    assert summary["psm"]["n_tokens"] == psm_tokens
    assert summary["psm"]["bits_per_char"] == pytest.approx(psm_tokens * bits / chars)
    assert summary["psm"]["suffix_gain"] == pytest.approx((prefix_only_tokens - psm_tokens) * bits / chars)
    assert summary["spm"]["bits_per_char"] == pytest.approx(summary["spm"]["n_tokens"] * bits / chars)
    assert summary["psm"]["token_accuracy"] == 0.0  # argmax is token 0, which no middle contains


