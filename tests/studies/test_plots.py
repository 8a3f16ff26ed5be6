import math

import pytest

from lit_codellama.studies.plots import ci95, clip, open_results


def test_intervals_are_clipped_to_the_metrics_range():
    assert clip("humaneval_pass@1", -0.027, 0.043) == (0.0, 0.043)
    assert clip("infilling_pass@1", 0.9, 1.2) == (0.9, 1.0)
    assert clip("val_loss", -0.5, 2.0) == (0.0, 2.0)
    assert clip("perplexity", 0.7, 3.0) == (1.0, 3.0)
    assert clip("humaneval_pass@1", -0.027, 0.043, difference=True) == (-0.027, 0.043)  # in [-1, 1]
    assert all(math.isnan(b) for b in clip("humaneval_pass@1", math.nan, math.nan))  # one seed: no interval


def test_seaborn_interval_of_seeds_never_leaves_the_range():
    low, high = ci95("humaneval_pass@1")([0.0, 0.0, 0.024])  # the t-interval alone reaches below 0
    assert low == 0.0 and 0.024 < high <= 1.0


def test_a_relative_results_dir_is_found_from_the_repository_root_wherever_the_kernel_runs(tmp_path, monkeypatch):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "ablations" / "results" / "s").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "notebooks")  # where `jupyter nbconvert` runs a notebook's kernel
    assert open_results("ablations/results/s").path == tmp_path / "ablations" / "results" / "s"
    assert open_results(tmp_path / "x").path == tmp_path / "x"
    with pytest.raises(FileNotFoundError, match="study.json not found"):
        _ = open_results("ablations/results/s").info


def test_claim_panels_follow_the_claims_table_and_draw_each_margin(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from test_analysis import claimed_study

    from lit_codellama.studies.plots import plot_claims

    results = claimed_study(tmp_path, {"base": [3.0, 3.1, 2.9], "fim": [2.5, 2.62, 2.41]})
    fig = plot_claims(results.info["claims"], results.claim_effects(), results.labels, paper={0: (-0.01, "paper")})
    primary, no_cost = [ax for ax in fig.axes if ax.get_visible()]
    assert primary.get_title().startswith("#1 PRIMARY: val_loss") and no_cost.get_title().startswith("#2 exploratory")
    # A gain beyond the margin is not "no cost" either: inconclusive.
    assert (primary.get_xlabel(), no_cost.get_xlabel()) == ("reproduced", "inconclusive")
    band = [p for p in no_cost.patches if p.get_label() == "no-cost margin"]
    assert len(band) == 1 and band[0].get_extents().height > 0 and not primary.patches
    assert [line.get_ydata()[0] for line in no_cost.lines if line.get_label() == "the paper's effect"] == [-0.01]
    assert len(primary.collections[0].get_offsets()) == 3  # one dot per seed


def test_paired_panel_clips_a_difference_of_fractions_to_its_range(tmp_path):
    import json

    import matplotlib
    import numpy as np
    import pandas as pd

    matplotlib.use("Agg")
    from lit_codellama.studies.plots import plot_against_reference

    (tmp_path / "study.json").write_text(json.dumps({"arms": {"ref": {"label": "ref"}, "arm": {"label": "arm"}}}))
    rows = [{"arm": arm, "seed": seed, "metric": "key_retrieval_top1", "length": n, "value": value}
            for n in (32, 64) for seed, top1 in enumerate((1.0, 0.0, 1.0))
            for arm, value in (("ref", 0.0), ("arm", top1))]
    pd.DataFrame(rows).to_csv(tmp_path / "runs.csv", index=False)
    fig = plot_against_reference(open_results(tmp_path), "key_retrieval_top1", "length", "ref", "top-1")
    paired = fig.axes[0]
    bars = np.concatenate([segment[:, 1] for c in paired.containers for segment in c.lines[2][0].get_segments()])
    assert bars.max() == 1.0 and bars.min() < 0  # the t-interval alone reaches 0.667 + 1.43
