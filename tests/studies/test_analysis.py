import numpy as np
import pytest

from lit_codellama.studies.analysis import StudyResults, attention_decay_bound


def test_attention_bound_starts_at_its_maximum_and_decays_slower_with_a_larger_base():
    d = 1024
    assert attention_decay_bound([0], rope_theta=1e4, dim=d)[0] == pytest.approx((d / 2 + 1) / 2)
    far = np.arange(4096, 16384, 7)
    small_base, large_base = attention_decay_bound(far, 1e4, d), attention_decay_bound(far, 1e6, d)
    assert large_base.mean() > 2 * small_base.mean()  # App. G: θ = 1e6 "reduces the decay"
    assert small_base.mean() < attention_decay_bound(np.arange(1, 64), 1e4, d).mean()


def test_position_interpolation_is_the_bound_at_scaled_down_distances():
    distances = np.arange(0, 8192, 64)
    np.testing.assert_allclose(
        attention_decay_bound(distances, 1e4, 256, rope_scaling=4.0), attention_decay_bound(distances / 4, 1e4, 256)
    )


def test_results_dir_without_a_study_says_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"study.json not found.*--preset tiny --out"):
        _ = StudyResults(tmp_path).info
