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


def claimed_study(tmp_path, values: dict[str, list[float]]):
    """A results directory with one "no cost" claim (log ratio, margin 0.05) and one effect claim on made-up values
    (arm -> per-seed val_loss); the effect claim's metric is the same loss, oriented lower-is-better."""
    import json

    import pandas as pd

    from lit_codellama.studies.stats import assess_claims
    from lit_codellama.studies.study import Claim

    claims = [Claim("costs little", "val_loss", "fim", "base", transform="log_ratio", margin=0.05, primary=False),
              Claim("lowers the loss", "val_loss", "fim", "base", direction=-1)]
    runs = pd.DataFrame([{"study": "s", "preset": "p", "arm": arm, "seed": seed, "metric": "val_loss", "value": v}
                         for arm, per_seed in values.items() for seed, v in enumerate(per_seed)])
    runs.to_csv(tmp_path / "runs.csv", index=False)
    info = {"arms": {"base": {"label": "FIM 0"}, "fim": {"label": "FIM 0.9"}},
            "claims": assess_claims(runs, claims)}
    (tmp_path / "study.json").write_text(json.dumps(info))
    return StudyResults(tmp_path)


def test_claim_effects_are_each_seeds_transformed_paired_effect(tmp_path):
    results = claimed_study(tmp_path, {"base": [2.0, 4.0, 3.0], "fim": [2.2, 4.0, 2.4]})
    effects = results.claim_effects()
    log_ratio = effects[effects["claim"] == 0].set_index("seed")["value"]
    np.testing.assert_allclose(log_ratio.loc[[0, 1, 2]], np.log([1.1, 1.0, 0.8]))
    difference = effects[effects["claim"] == 1].set_index("seed")["value"]
    np.testing.assert_allclose(difference.loc[[0, 1, 2]], [0.2, 0.0, -0.6])
    assert difference.mean() == pytest.approx(results.info["claims"][1]["estimate"])


def test_claims_table_puts_primary_claims_first_with_the_verdict_in_words(tmp_path):
    from lit_codellama.studies.analysis import claims_table

    results = claimed_study(tmp_path, {"base": [3.0, 3.1, 2.9], "fim": [2.5, 2.62, 2.41]})
    table = claims_table(results.info["claims"], results.labels)
    assert table["claim"].tolist() == ["lowers the loss", "costs little"]  # study.json lists the primary second
    assert table.index.tolist() == [1, 2]
    first = table.loc[1]
    assert first["comparison"] == "FIM 0.9 vs FIM 0" and first["test"] == "paper: arm lower"
    assert first["verdict"].startswith("reproduced: the interval excludes 0 on the paper's side")
    c = results.info["claims"][1]
    assert first["estimate [95% interval]"] == f"{c['estimate']:+.3g} [{c['low']:+.3g}, {c['high']:+.3g}]"
    assert table.loc[2, "test"] == "no cost: inside ±0.05" and table.loc[2, "verdict"].startswith("inconclusive")
