import math
import statistics

import numpy as np
import pandas as pd
import pytest

from lit_codellama.errors import ConfigError
from lit_codellama.studies.stats import (
    assess_claims,
    format_claims,
    format_summary,
    paired_differences,
    summarize,
    t_interval,
)
from lit_codellama.studies.study import Claim


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


def claim(**fields) -> Claim:
    return Claim(**{"text": "FIM costs nothing", "metric": "loss", "arm": "fim", "baseline": "base", **fields})


def paired(effects, base=2.0, transform="difference", extra=()) -> pd.DataFrame:
    """A tidy table whose per-seed effect of `fim` over `base` is `effects`, on top of a seed-to-seed spread."""
    rows = []
    for seed, effect in enumerate(effects):
        b = base + seed  # seeds differ by far more than the effect: only pairing recovers it
        a = b + effect if transform == "difference" else b * math.exp(effect)
        rows += [{"arm": "base", "seed": seed, "metric": "loss", "step": 10.0, "value": b},
                 {"arm": "fim", "seed": seed, "metric": "loss", "step": 10.0, "value": a}, *extra]
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "effects, fields, expected",
    [
        ([1.0, 1.1, 1.2], {}, "reproduced"),  # interval [0.75, 1.35] excludes 0 on the paper's side
        ([1.0, 1.1, 1.2], {"direction": -1}, "contradicted"),
        ([-0.1, 0.1, 0.3], {}, "inconclusive"),  # [-0.40, 0.60] holds 0
        ([0.001, 0.002, 0.003], {"margin": 0.01}, "equivalent"),  # [-0.0005, 0.0045] inside ±0.01
        ([0.05, 0.06, 0.07], {"margin": 0.01}, "contradicted"),  # [0.035, 0.085] beyond +0.01
        ([-0.05, -0.06, -0.07], {"margin": 0.01, "direction": -1}, "contradicted"),  # the cost is the lower side
        ([0.005, 0.01, 0.015], {"margin": 0.01}, "inconclusive"),  # [-0.0074, 0.027] straddles +0.01
        ([-0.05, -0.06, -0.07], {"margin": 0.01}, "inconclusive"),  # a gain beyond the margin is not "no cost"
        ([0.5], {}, "inconclusive"),  # one seed: no interval
    ],
)
def test_verdicts_follow_the_paired_interval_against_zero_or_the_margin(effects, fields, expected):
    (result,) = assess_claims(paired(effects), [claim(**fields)])
    assert result["verdict"] == expected
    assert result["n"] == len(effects)
    assert result["estimate"] == pytest.approx(sum(effects) / len(effects))
    if len(effects) == 3:
        half = 4.302653 * statistics.stdev(effects) / math.sqrt(3)
        assert result["high"] - result["estimate"] == pytest.approx(half, rel=1e-5)
    else:
        assert result["low"] is None and result["high"] is None


def test_a_log_ratio_claim_measures_the_relative_change_seed_by_seed():
    table = paired([0.01, 0.02, 0.03], transform="log_ratio")
    (result,) = assess_claims(table, [claim(transform="log_ratio", margin=0.1)])
    assert result["estimate"] == pytest.approx(0.02)
    assert result["verdict"] == "equivalent"
    (as_difference,) = assess_claims(table, [claim()])
    assert as_difference["estimate"] > 0.03  # the same effect in nats grows with each seed's loss


def test_a_claim_selects_its_coordinates_and_pairs_only_seeds_both_arms_have():
    other_step = [{"arm": arm, "seed": s, "metric": "loss", "step": 5.0, "value": 99.0 * (arm == "fim")}
                  for arm in ("base", "fim") for s in range(3)]
    table = paired([0.1, 0.2, 0.3], extra=other_step[:1])
    table = pd.concat([table, pd.DataFrame(other_step[1:])], ignore_index=True)
    table = table[~((table.arm == "fim") & (table.seed == 2) & (table.step == 10.0))]  # fim seed 2 never finished
    (result,) = assess_claims(table, [claim(where={"step": 10.0})])
    assert result["n"] == 2 and result["estimate"] == pytest.approx(0.15)
    with pytest.raises(ConfigError, match=r"several rows per run; fix them with `where` on \['step'\]"):
        assess_claims(table, [claim()])
    pooled = pd.concat([table, pd.DataFrame([{"arm": a, "seed": s, "metric": "loss", "value": 1.0 + (a == "fim")}
                                             for a in ("base", "fim") for s in range(3)])], ignore_index=True)
    (result,) = assess_claims(pooled, [claim(where={"step": None})])  # None: the rows without a step
    assert result["n"] == 3 and result["estimate"] == 1.0
    with pytest.raises(ConfigError, match="runs.csv has no column .mode."):
        assess_claims(table, [claim(where={"mode": "psm"})])
    with pytest.raises(ConfigError, match="no 'pass' rows"):
        assess_claims(table, [claim(metric="pass")])


def test_the_answer_names_each_claims_estimate_interval_and_verdict_primary_first():
    table = paired([1.0, 1.1, 1.2])
    results = assess_claims(table, [claim(text="side finding", primary=False), claim(text="main finding")])
    text = format_claims(results, {"fim": "FIM 0.9", "base": "FIM 0"})
    lines = text.splitlines()
    assert lines[0] == "PRIMARY: main finding" and lines[3] == "exploratory: side finding"
    assert lines[1].startswith("  REPRODUCED: loss, FIM 0.9 vs FIM 0, difference +1.1 [+0.8516, +1.348]")
    assert lines[2] == "  = reproduced: the interval excludes 0 on the paper's side"
    (no_cost,) = assess_claims(table, [claim(margin=0.5)])
    assert "CONTRADICTED" in format_claims([no_cost]) and "beyond the margin" in format_claims([no_cost])


def test_seeds_are_planned_from_the_pilots_sd_upper_bound_to_reach_the_half_width():
    from scipy import stats as scipy_stats

    from lit_codellama.studies.stats import seeds_for_half_width

    pilot = [0.004, -0.002, 0.0015, 0.001]  # SD 0.00245
    bound = np.std(pilot, ddof=1) * np.sqrt(3 / scipy_stats.chi2.ppf(0.2, 3))  # the SD's upper 80% bound: x 1.73

    def half_width(n):
        return scipy_stats.t.ppf(0.975, n - 1) * bound / np.sqrt(n)

    n = seeds_for_half_width(pilot, 0.005)
    assert half_width(n) <= 0.005 < half_width(n - 1) and n == 6  # 2.571 x 0.00426 / sqrt(6) = 0.00447
    assert seeds_for_half_width(pilot, 0.005, sd_confidence=0.5) < n  # a looser bound plans fewer
    assert seeds_for_half_width(pilot, 0.0025) > n  # half the width needs about four times the seeds
    with pytest.raises(ValueError, match="at least two"):
        seeds_for_half_width([0.01], 0.005)
