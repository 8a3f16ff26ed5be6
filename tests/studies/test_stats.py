import math

import pandas as pd
import pytest

from lit_codellama.studies.stats import format_summary, paired_differences, summarize, t_interval


def test_t_interval_matches_the_textbook_formula():
    # mean 2, sample sd 1, n 3: half-width = t(0.975, df=2) * 1 / sqrt(3) = 4.302653 / 1.732051
    mean, low, high = t_interval([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert high - mean == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert mean - low == pytest.approx(high - mean)


def test_t_interval_narrows_with_confidence_and_collapses_for_identical_seeds():
    _, low90, high90 = t_interval([1.0, 2.0, 4.0], confidence=0.90)
    _, low95, high95 = t_interval([1.0, 2.0, 4.0])
    assert low95 < low90 < high90 < high95
    assert t_interval([0.5, 0.5, 0.5]) == (0.5, 0.5, 0.5)


def test_one_seed_has_a_mean_but_no_interval():
    mean, low, high = t_interval([0.7])
    assert mean == 0.7 and math.isnan(low) and math.isnan(high)
    with pytest.raises(ValueError):
        t_interval([])


def test_summary_groups_by_arm_metric_and_coordinates():
    table = pd.DataFrame(
        [
            {"arm": arm, "seed": s, "metric": "ppl", "length": n, "value": float(s + n)}
            for arm in ("a", "b")
            for s in range(3)
            for n in (64, 128)
        ]
        + [{"arm": "a", "seed": s, "metric": "loss", "length": None, "value": 1.0} for s in range(3)]
    )
    summary = summarize(table)
    assert len(summary) == 2 * 2 + 1
    row = summary[(summary.arm == "b") & (summary.length == 128)].iloc[0]
    assert row["n"] == 3 and row["mean"] == 129.0 and row["low"] < 129.0 < row["high"]
    text = format_summary(summary, ["b", "a"])
    header, *lines = text.splitlines()
    assert header.split() == ["arm", "b", "a"]
    assert any(line.startswith("ppl [length=128]") and "129 ± 2.5" in line for line in lines)


def test_paired_differences_subtract_the_baseline_seed_by_seed():
    table = pd.DataFrame(
        [
            {"arm": arm, "seed": s, "metric": "loss", "mode": mode, "value": 10.0 * s + offset + (mode == "spm")}
            for arm, offset in (("base", 0.0), ("fim", 0.25))
            for s in range(3)
            for mode in ("psm", "spm")
        ]
        + [
            {"arm": arm, "seed": s, "metric": "pass", "mode": None, "value": offset}
            for arm, offset in (("base", 0.5), ("fim", 0.25))
            for s in range(3)
        ]
    )
    diffs = paired_differences(table, "base")
    assert set(diffs["arm"]) == {"fim"} and len(diffs) == 3 * 3
    # Seeds differ by 10 but each difference is exactly the offset: pairing removes the seed-to-seed spread.
    assert diffs.loc[diffs.metric == "loss", "value"].tolist() == [0.25] * 6
    assert diffs.loc[diffs.metric == "pass", "value"].tolist() == [-0.25] * 3
    with pytest.raises(ValueError, match="baseline arm 'none'"):
        paired_differences(table, "none")
