"""The paper's RoPE geometry at a small scale: which base θ makes a short training window look, to the rotary
frequencies, as Llama 2's 4K window with θ = 1e4 and Code Llama's 16K window with θ = 1e6 do.

Rotary pair i (of d/2) turns at frequency θ^(-2i/d), so its period is 2π·θ^(2i/d). Liu et al. 2023 (arXiv
2310.05209) call the pairs whose period fits in the training window L the ones that learn every rotation; the
critical dimension

    d_extra = 2·⌈(d/2)·log_θ(L / 2π)⌉                       (92 of 128 for Llama 2: d = 128, θ = 1e4, L = 4,096)

counts them, and the rest (periods longer than L) are what extrapolation breaks. The share log_θ(L / 2π) does not
depend on d, so a window L' keeps the paper's share f = log_θ(L / 2π) with

    θ' = (L' / 2π)^(1 / f),

and the head size d' only sets how finely the share is resolved: `critical_dimension(d', θ', L')` is the paper's
d_extra scaled to d' up to the rounding of one pair. Men et al. 2024 (arXiv 2405.14591) give a lower bound for
retrieval at length L, θ ≳ 0.0424·L^1.628 (`retrieval_base_bound`), to check the small-scale θ against.
"""

from __future__ import annotations

import math

LLAMA2 = {"rope_theta": 1e4, "length": 4096}  # Llama 2's pretraining window and base
CODE_LLAMA = {"rope_theta": 1e6, "length": 16384}  # Code Llama's long-context fine-tuning window and base
PAPER_HEAD_SIZE = 128


def critical_fraction(rope_theta: float, length: int) -> float:
    """log_θ(L / 2π): the share of rotary pairs whose period is at most the window, before rounding to a pair."""
    return math.log(length / (2 * math.pi)) / math.log(rope_theta)


def critical_dimension(head_size: int, rope_theta: float, length: int) -> int:
    """Liu et al.'s d_extra = 2·⌈(d/2)·log_θ(L/2π)⌉: the dimensions whose period fits in the window L (at most d)."""
    return min(head_size, 2 * math.ceil(head_size / 2 * critical_fraction(rope_theta, length)))


def extrapolation_bound(head_size: int, rope_theta: float, length: int) -> float:
    """Liu et al.'s T = 2π·θ^(d_extra/d): the length up to which the trained rotations cover every pair."""
    return 2 * math.pi * rope_theta ** (critical_dimension(head_size, rope_theta, length) / head_size)


def matched_theta(length: int, reference: dict[str, float]) -> float:
    """The base that gives a window of `length` tokens the critical fraction of `reference` (rope_theta, length)."""
    return (length / (2 * math.pi)) ** (1 / critical_fraction(reference["rope_theta"], reference["length"]))


def retrieval_base_bound(length: int) -> float:
    """Men et al. 2024's empirical lower bound on θ for retrieval at `length` tokens: 0.0424·L^1.628."""
    return 0.0424 * length**1.628


def paper_geometry(pretrain_length: int, lcft_length: int, head_size: int) -> dict[str, float]:
    """θ for pretraining at `pretrain_length` and for LCFT at `lcft_length` with Llama 2's and Code Llama's
    critical fractions, and the resulting shares of the head's dimensions (to compare with the paper's)."""
    pretrain = matched_theta(pretrain_length, LLAMA2)
    lcft = matched_theta(lcft_length, CODE_LLAMA)
    return {
        "pretrain_theta": pretrain,
        "lcft_theta": lcft,
        "pretrain_share": critical_dimension(head_size, pretrain, pretrain_length) / head_size,
        "lcft_share": critical_dimension(head_size, lcft, lcft_length) / head_size,
        "paper_pretrain_share": critical_dimension(PAPER_HEAD_SIZE, **LLAMA2) / PAPER_HEAD_SIZE,
        "paper_lcft_share": critical_dimension(PAPER_HEAD_SIZE, **CODE_LLAMA) / PAPER_HEAD_SIZE,
    }
