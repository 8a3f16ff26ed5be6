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


def test_context_curves_gather_every_runs_per_position_losses(tmp_path):
    import json

    import pandas as pd

    (tmp_path / "study.json").write_text(json.dumps({"arms": {"lcft": {"label": "LCFT"}, "base": {"label": "base"}}}))
    for arm, seed in (("lcft", 0), ("lcft", 1), ("base", 0)):
        curve = tmp_path / "runs" / arm / f"seed={seed}" / "eval" / "context_gain" / "curve.csv"
        curve.parent.mkdir(parents=True)
        pd.DataFrame({"position": [1, 2], "loss_full": [3.0, 2.0 + seed], "loss_capped": [3.0, 2.5]}).to_csv(curve,
                                                                                                          index=False)
    curves = StudyResults(tmp_path).context_curves
    assert len(curves) == 6 and set(curves["arm_label"]) == {"LCFT", "base"}
    assert curves.query("arm_label == 'LCFT' and position == 2")["loss_full"].tolist() == [2.0, 3.0]
    other = tmp_path / "fim_study"
    other.mkdir()
    (other / "study.json").write_text(json.dumps({"arms": {"fim=0.0": {"label": "FIM 0"}}}))
    with pytest.raises(FileNotFoundError, match="no context-gain curves"):
        _ = StudyResults(other).context_curves
