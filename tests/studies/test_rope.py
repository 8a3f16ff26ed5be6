"""The small-scale RoPE geometry against the paper's numbers (Liu et al. 2023's critical dimension)."""

import math

import pytest

from lit_codellama.studies.rope import (
    CODE_LLAMA,
    LLAMA2,
    critical_dimension,
    critical_fraction,
    extrapolation_bound,
    matched_theta,
    paper_geometry,
    retrieval_base_bound,
)


def test_the_critical_dimension_reproduces_the_papers_numbers():
    assert critical_dimension(128, **LLAMA2) == 92  # Liu et al.: 92 of Llama 2's 128 dimensions at 4K
    assert critical_dimension(128, **CODE_LLAMA) == 74  # Code Llama at 16K with 1e6: 58% of the dimensions
    # T = 2π·θ^(d_extra/d) = 2π·1e4^(92/128) ≈ 4.7K: Llama 2 extrapolates little beyond its 4K window
    assert extrapolation_bound(128, **LLAMA2) == pytest.approx(2 * math.pi * 1e4 ** (92 / 128))
    assert 4096 < extrapolation_bound(128, **LLAMA2) < 5000


def test_at_our_old_head_size_and_windows_both_bases_were_predicted_to_extrapolate_alike():
    # study-design.md: for d = 24 at 512 tokens the bound is ~630 tokens for θ = 1e4 and 1e6 alike
    assert extrapolation_bound(24, 1e4, 512) == pytest.approx(extrapolation_bound(24, 1e6, 512))
    assert extrapolation_bound(24, 1e4, 512) == pytest.approx(628.3, abs=1)


@pytest.mark.parametrize("pretrain, lcft", [(128, 512), (256, 1024), (64, 512)])
def test_matched_bases_give_a_small_window_the_papers_share_of_rotary_dimensions(pretrain, lcft):
    geometry = paper_geometry(pretrain, lcft, head_size=64)
    assert critical_fraction(geometry["pretrain_theta"], pretrain) == pytest.approx(critical_fraction(**LLAMA2))
    assert critical_fraction(geometry["lcft_theta"], lcft) == pytest.approx(critical_fraction(**CODE_LLAMA))
    assert geometry["pretrain_share"] == geometry["paper_pretrain_share"] == 92 / 128
    assert abs(geometry["lcft_share"] - geometry["paper_lcft_share"]) <= 2 / 64  # one rotary pair of rounding
    assert geometry["pretrain_theta"] < geometry["lcft_theta"]
    # As in the paper, the pretraining base covers a little more than its window, the raised one several times
    ratio = extrapolation_bound(128, **LLAMA2) / LLAMA2["length"]
    assert extrapolation_bound(64, geometry["pretrain_theta"], pretrain) / pretrain == pytest.approx(ratio, rel=0.1)


def test_matching_the_paper_at_its_own_window_returns_its_base():
    assert matched_theta(4096, LLAMA2) == pytest.approx(1e4)
    assert matched_theta(16384, CODE_LLAMA) == pytest.approx(1e6)
    assert retrieval_base_bound(512) == pytest.approx(1.1e3, rel=0.05)  # Men et al. 2024: ≈1.1e3 at 512
