"""Likelihood metrics, computed from the model's logits: they stay informative for models too small to pass tests.

- `perplexity`: loss, perplexity and bits per byte of held-out text, in windows of a given context length.
- `perplexity_by_context_length`: the same for several context lengths (the paper's Fig. 4a), including
  lengths beyond the training context (RoPE is computed for any position).
- `humaneval_solution_loss`: the loss of HumanEval's canonical solutions given their prompts.
- `infilling_middle_loss`: the loss of the canonical middle (and <EOT>) given prefix and suffix, in PSM or SPM.
- `infilling_likelihood`: per mode, the middle's bits per character, teacher-forced token accuracy, and the suffix
  gain (what seeing the suffix saves over the prefix alone), comparable across PSM, SPM and a model without FIM.
- `context_gain`: the same target tokens scored with all preceding tokens and with at most W of them, by position
  bucket [W, 2W), [2W, 4W), ...: what a model gains from context beyond W, free of "later tokens are easier".
Losses are natural-log nats per token; bits per byte divides the total by ln 2 and by the UTF-8 bytes scored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from lit_codellama.evaluation.data import EvalInputError
from lit_codellama.evaluation.humaneval import humaneval_problems
from lit_codellama.evaluation.infilling import infilling_problems
from lit_codellama.evaluation.tasks import write_results
from lit_codellama.fim import FIMSplit, fim_sample, infilling_prompt
from lit_codellama.loss import IGNORE_INDEX, next_token_nats
from lit_codellama.model import Llama
from lit_codellama.progress import progress_bar


@torch.inference_mode()
def target_scores(
    model, sequences: Sequence[tuple[list[int], int]], batch_size: int = 8
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """For each (ids, start): per target token ids[start:], its NLL given all tokens before it, and whether it is the
    model's most likely token there (teacher-forced accuracy)."""
    device = model.output.weight.device
    out: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(sequences)
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i][0]))  # batch similar lengths
    for first in range(0, len(order), batch_size):
        rows = order[first : first + batch_size]
        length = max(len(sequences[i][0]) for i in rows)
        idx = torch.zeros(len(rows), length, dtype=torch.long, device=device)
        targets = torch.full_like(idx, IGNORE_INDEX)  # ignored: padding and the context
        for r, i in enumerate(rows):
            ids, start = sequences[i]
            if not 1 <= start < len(ids):
                raise ValueError(f"sequence {i}: targets must start within 1..{len(ids) - 1}, got {start}")
            idx[r, : len(ids)] = torch.tensor(ids)
            targets[r, start - 1 : len(ids) - 1] = torch.tensor(ids[start:])
        scored_at = targets != IGNORE_INDEX
        logits = _logits_at(model, idx, scored_at)  # (N, vocab): the scored positions only
        nll = torch.zeros(targets.shape, device=device)
        nll[scored_at] = next_token_nats(logits[None], targets[scored_at][None])[0]
        correct = torch.zeros(targets.shape, dtype=torch.bool, device=device)
        correct[scored_at] = logits.argmax(dim=-1) == targets[scored_at]
        for r, i in enumerate(rows):
            ids, start = sequences[i]
            scored = slice(start - 1, len(ids) - 1)
            out[i] = (nll[r, scored].cpu(), correct[r, scored].cpu())
    return out


def _logits_at(model, idx: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Logits at the positions `where` (B, T) selects. A `Llama` applies its output layer there only: over the whole
    vocabulary that layer is most of a small model's forward pass, and most positions are context, not targets."""
    if isinstance(model, Llama):
        return model.output(model.hidden_states(idx)[where])
    return model(idx)[where]


def target_nll(model, sequences: Sequence[tuple[list[int], int]], batch_size: int = 8) -> list[tuple[float, list[int]]]:
    """For each (ids, start): the summed NLL of ids[start:] given all tokens before it, and those target ids."""
    scores = target_scores(model, sequences, batch_size)
    return [(float(nll.sum()), ids[start:]) for (ids, start), (nll, _) in zip(sequences, scores, strict=True)]


def _summary(tok, scored: Sequence[tuple[float, list[int]]], **extra: Any) -> dict[str, Any]:
    total = sum(nll for nll, _ in scored)
    n_tokens = sum(len(t) for _, t in scored)
    n_bytes = sum(tok.byte_lengths[i] for _, t in scored for i in t)
    loss = total / n_tokens
    return {"loss": loss, "perplexity": math.exp(loss), "bits_per_byte": total / math.log(2) / max(n_bytes, 1),
            "n_tokens": n_tokens, "n_bytes": n_bytes, **extra}


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def continuation(context: list[int], full: list[int]) -> tuple[list[int], int]:
    """Score the tokens of `full` after the ones it shares with `context` (the same text encoded alone), so a token
    that straddles the boundary is scored with the continuation."""
    return full, max(1, _common_prefix(context, full))


def humaneval_solution_loss(model, tok, limit: int | None = None, batch_size: int = 8) -> dict[str, Any]:
    """Loss of each canonical solution given its prompt, over all 164 problems (or the first `limit`)."""
    problems = humaneval_problems(limit)
    sequences = [continuation(tok.encode(p.prompt, bos=True), tok.encode(p.prompt + p.reference, bos=True))
                 for p in problems]
    return _summary(tok, target_nll(model, sequences, batch_size), task="humaneval-solution-loss",
                    n_problems=len(problems))


def infilling_middle_loss(
    model, tok, subset: str = "single-line", mode: str = "psm", limit: int | None = None, batch_size: int = 8
) -> dict[str, Any]:
    """Loss of each canonical middle and the closing <EOT>, laid out as in FIM training, given prefix and suffix."""
    if mode not in ("psm", "spm"):
        raise ValueError(f"mode must be 'psm' or 'spm', got {mode!r}")
    problems = infilling_problems(subset, limit)
    sequences = []
    for p in problems:
        split = FIMSplit(p.prompt, p.reference, p.suffix, spm=mode == "spm")
        sequences.append(continuation(infilling_prompt(tok, p.prompt, p.suffix, suffix_first=split.spm),
                                       fim_sample(tok, split)))
    return _summary(tok, target_nll(model, sequences, batch_size), task=f"infilling-middle-loss-{subset}-{mode}",
                    n_problems=len(problems))


def infilling_likelihood(
    model, tok, subset: str = "single-line", modes: Sequence[str] = ("psm", "spm"), limit: int | None = None,
    batch_size: int = 8,
) -> dict[str, Any]:
    """How well the model predicts each canonical middle, teacher-forced, in units every layout shares.

    Per mode, over all tasks pooled: `bits_per_char` of the middle given prefix and suffix in the FIM training
    layout (the tokens that cover the middle, without <EOT>, over the middle's characters: PSM and SPM tokenize the
    middle differently, so nats per token would not compare); `token_accuracy`, the share of those tokens that are
    the model's most likely token; `suffix_gain`, the bits per character saved by the suffix: the middle's bits with
    the prefix alone (plain left-to-right text, no sentinel tokens) minus its bits with prefix and suffix. A model
    trained without FIM scores `prefix_only_bits_per_char` fairly; its suffix gain shows whether FIM taught anything.
    """
    for mode in modes:
        if mode not in ("psm", "spm"):
            raise ValueError(f"mode must be 'psm' or 'spm', got {mode!r}")
    problems = infilling_problems(subset, limit)
    n_chars = sum(len(p.reference) for p in problems)
    prefix_only = [continuation(tok.encode(p.prompt, bos=True), tok.encode(p.prompt + p.reference, bos=True))
                   for p in problems]
    prefix_only_bits = sum(float(nll.sum()) for nll, _ in target_scores(model, prefix_only, batch_size)) / math.log(2)
    summary: dict[str, Any] = {"task": f"infilling-likelihood-{subset}", "n_problems": len(problems),
                               "n_chars": n_chars, "prefix_only_bits_per_char": prefix_only_bits / n_chars}
    for mode in modes:
        sequences = []
        for p in problems:
            sample = fim_sample(tok, FIMSplit(p.prompt, p.reference, p.suffix, spm=mode == "spm"))[:-1]  # no <EOT>
            sequences.append(continuation(infilling_prompt(tok, p.prompt, p.suffix, suffix_first=mode == "spm"),
                                           sample))
        scores = target_scores(model, sequences, batch_size)
        bits = sum(float(nll.sum()) for nll, _ in scores) / math.log(2)
        summary[mode] = {
            "bits_per_char": bits / n_chars,
            "token_accuracy": sum(int(c.sum()) for _, c in scores) / sum(len(c) for _, c in scores),
            "suffix_gain": (prefix_only_bits - bits) / n_chars,
            "n_tokens": sum(len(c) for _, c in scores),
        }
    return summary


def token_losses(
    model, ids: Sequence[int], window: int | None = None, stride: int = 1, batch_size: int = 8
) -> torch.Tensor:
    """NLL of ids[1:]: each token given all tokens before it or, with `window`, at most the `window` tokens before it.

    Capped, tokens are scored `stride` at a time in windows of window + 1 tokens, so each sees between
    window - stride + 1 and window tokens (exactly `window` with stride 1; a band mask would not do: in a stack of
    layers, a token attends to states that attended further back). Tokens with fewer than `window` before them are
    scored with all of them either way.
    """
    full = target_scores(model, [(list(ids), 1)], batch_size=1)[0][0]
    if window is None or len(ids) <= window + 1:
        return full
    if not 1 <= stride <= window:
        raise ValueError(f"stride must be in 1..{window}, got {stride}")
    windows = []
    for first in range(window + 1, len(ids), stride):  # targets first .. first + stride - 1
        end = min(first + stride, len(ids))
        windows.append((list(ids[end - 1 - window : end]), window + 1 - (end - first)))
    capped = torch.cat([nll for nll, _ in target_scores(model, windows, batch_size)])
    return torch.cat([full[:window], capped])


def position_buckets(window: int, max_length: int) -> list[tuple[int, int]]:
    """Target positions (number of preceding tokens) [W, 2W), [2W, 4W), ... up to `max_length` (the last may be cut)."""
    buckets, start = [], window
    while start < max_length:
        buckets.append((start, min(2 * start, max_length)))
        start *= 2
    return buckets


def context_gain(
    model,
    tok,
    texts: Sequence[str],
    window: int,
    max_length: int,
    stride: int | None = None,
    batch_size: int = 8,
    out_dir: str | Path | None = None,
) -> dict[str, Any]:
    """What context beyond `window` tokens is worth, on the same target tokens: each text's first `max_length`
    tokens, every token scored with all tokens before it ("full") and with at most `window` ("capped"; `stride`
    as in `token_losses`, default window / 8: each capped token sees 7/8 to all of the window).

    Per position bucket [W, 2W), [2W, 4W), ... (a target's position = the tokens before it, BOS included):
    `loss_full`, `loss_capped` and `context_gain` = capped - full (nats per token; > 0: the longer context helps,
    < 0: the model is hurt by positions it cannot handle). Tokens before W see the same context both ways.
    With `out_dir`, `curve.csv` holds the per-position losses averaged over texts.
    """
    docs = [tok.encode(t, bos=True)[:max_length] for t in texts]
    short = [len(ids) for ids in docs if len(ids) < max_length]
    if short or not docs:
        raise EvalInputError(f"context gain needs texts of at least {max_length} tokens; {len(short)} of {len(docs)} "
                             f"are shorter (shortest {min(short, default=0)}): give longer texts or a lower max_length")
    if not 0 < window < max_length:
        raise ValueError(f"window must be in 1..{max_length - 1}, got {window}")
    stride = stride or max(1, window // 8)
    full = torch.stack([token_losses(model, ids) for ids in docs])  # (texts, max_length - 1): targets 1 .. max-1
    capped = torch.stack([token_losses(model, ids, window, stride, batch_size) for ids in docs])
    rows = []
    for start, end in position_buckets(window, max_length):
        f, c = full[:, start - 1 : end - 1].mean().item(), capped[:, start - 1 : end - 1].mean().item()
        rows.append({"position": start, "end": end, "loss_full": f, "loss_capped": c, "context_gain": c - f})
    summary = {"task": "context-gain", "window": window, "stride": stride, "max_length": max_length,
               "n_texts": len(docs),
               "rope_theta": model.config.rope_theta, "rope_scaling": model.config.rope_scaling, "buckets": rows}
    if out_dir is not None:
        write_results(out_dir, rows, summary)
        pd.DataFrame({"position": range(1, max_length), "loss_full": full.mean(0).numpy(),
                      "loss_capped": capped.mean(0).numpy()}).to_csv(Path(out_dir) / "curve.csv", index=False)
    return summary


def _windows(ids: list[int], length: int, stride: int) -> list[tuple[list[int], int]]:
    """Full windows of `length` tokens every `stride` tokens. The first scores all its tokens; each later one only
    its last `stride` (not yet scored), so every scored token sees at least length - stride tokens of context.
    A window's first token has no context in it: non-overlapping windows (stride = length) leave it out."""
    return [(ids[start : start + length], 1 if start == 0 else max(1, length - stride))
            for start in range(0, len(ids) - length + 1, stride)]


def perplexity(
    model, tok, texts: Sequence[str], context_length: int, stride: int | None = None, batch_size: int = 1
) -> dict[str, Any]:
    """Loss, perplexity and bits per byte of `texts` in windows of `context_length` tokens (stride defaults to
    the window: non-overlapping). Texts shorter than one window are left out, so every window is full."""
    stride = stride or context_length
    if not 0 < stride <= context_length:
        raise ValueError(f"stride must be in 1..{context_length}, got {stride}")
    encoded = [tok.encode(t, bos=True) for t in texts]
    long_enough = [ids for ids in encoded if len(ids) >= context_length]
    if not long_enough:
        longest = max((len(ids) for ids in encoded), default=0)
        raise EvalInputError(f"no text has {context_length} tokens (the longest has {longest}); give longer texts "
                             "or a shorter context length")
    windows = [w for ids in long_enough for w in _windows(ids, context_length, stride)]
    return _summary(tok, target_nll(model, windows, batch_size), context_length=context_length, stride=stride,
                    n_texts=len(long_enough), n_windows=len(windows))


def perplexity_by_context_length(
    model,
    tok,
    texts: Sequence[str],
    lengths: Sequence[int],
    stride: int | None = None,
    batch_size: int = 1,
    out_dir: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """`perplexity` at each context length; rows in `by_length`. Only texts that fill the longest window are
    used, so every length is measured on the same texts. `progress`: a bar of lengths done (on a terminal)."""
    longest = max(lengths)
    n_tokens = [len(tok.encode(t, bos=True)) for t in texts]
    texts = [t for t, n in zip(texts, n_tokens, strict=True) if n >= longest]
    if not texts:
        raise EvalInputError(f"no text has {longest} tokens (the longest has {max(n_tokens, default=0)}); give longer "
                             "texts or shorter context lengths")
    bar = progress_bar(sorted(lengths), desc="perplexity", unit="length", leave=False, enabled=progress)
    rows = [perplexity(model, tok, texts, n, stride and min(stride, n), batch_size) for n in bar]
    summary = {"task": "long-context-perplexity", "n_texts": len(texts), "block_size": model.config.block_size,
               "rope_theta": model.config.rope_theta, "rope_scaling": model.config.rope_scaling, "by_length": rows}
    if out_dir is not None:
        write_results(out_dir, rows, summary)
    return summary
