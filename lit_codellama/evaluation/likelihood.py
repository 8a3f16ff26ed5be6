"""Likelihood metrics, computed from the model's logits: they stay informative for models too small to pass tests.

- `perplexity`: loss, perplexity and bits per byte of held-out text, in windows of a given context length.
- `perplexity_by_context_length`: the same for several context lengths (the paper's Fig. 4a), including
  lengths beyond the training context (RoPE is computed for any position).
- `humaneval_solution_loss`: the loss of HumanEval's canonical solutions given their prompts.
- `infilling_middle_loss`: the loss of the canonical middle (and <EOT>) given prefix and suffix, in PSM or SPM.
Losses are natural-log nats per token; bits per byte divides the total by ln 2 and by the UTF-8 bytes scored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from lit_codellama.evaluation.data import EvalInputError
from lit_codellama.evaluation.humaneval import humaneval_problems
from lit_codellama.evaluation.infilling import infilling_problems
from lit_codellama.evaluation.tasks import write_results
from lit_codellama.fim import FIMSplit, fim_sample, infilling_prompt
from lit_codellama.loss import IGNORE_INDEX, next_token_nats


@torch.inference_mode()
def target_nll(model, sequences: Sequence[tuple[list[int], int]], batch_size: int = 8) -> list[tuple[float, list[int]]]:
    """For each (ids, start): the summed NLL of ids[start:] given all tokens before it, and those target ids."""
    device = model.output.weight.device
    out: list[tuple[float, list[int]] | None] = [None] * len(sequences)
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
        nll = next_token_nats(model(idx), targets).sum(dim=1)
        for r, i in enumerate(rows):
            ids, start = sequences[i]
            out[i] = (float(nll[r]), ids[start:])
    return out


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


def _continuation(context: list[int], full: list[int]) -> tuple[list[int], int]:
    """Score the tokens of `full` after the ones it shares with `context` (the same text encoded alone), so a token
    that straddles the boundary is scored with the continuation."""
    return full, max(1, _common_prefix(context, full))


def humaneval_solution_loss(model, tok, limit: int | None = None, batch_size: int = 8) -> dict[str, Any]:
    """Loss of each canonical solution given its prompt, over all 164 problems (or the first `limit`)."""
    problems = humaneval_problems(limit)
    sequences = [_continuation(tok.encode(p.prompt, bos=True), tok.encode(p.prompt + p.reference, bos=True))
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
        sequences.append(_continuation(infilling_prompt(tok, p.prompt, p.suffix, suffix_first=split.spm),
                                       fim_sample(tok, split)))
    return _summary(tok, target_nll(model, sequences, batch_size), task=f"infilling-middle-loss-{subset}-{mode}",
                    n_problems=len(problems))


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
) -> dict[str, Any]:
    """`perplexity` at each context length; rows in `by_length`. Only texts that fill the longest window are
    used, so every length is measured on the same texts."""
    longest = max(lengths)
    n_tokens = [len(tok.encode(t, bos=True)) for t in texts]
    texts = [t for t, n in zip(texts, n_tokens, strict=True) if n >= longest]
    if not texts:
        raise EvalInputError(f"no text has {longest} tokens (the longest has {max(n_tokens, default=0)}); give longer "
                             "texts or shorter context lengths")
    rows = [perplexity(model, tok, texts, n, stride and min(stride, n), batch_size) for n in sorted(lengths)]
    summary = {"task": "long-context-perplexity", "n_texts": len(texts), "block_size": model.config.block_size,
               "rope_theta": model.config.rope_theta, "rope_scaling": model.config.rope_scaling, "by_length": rows}
    if out_dir is not None:
        write_results(out_dir, rows, summary)
    return summary
