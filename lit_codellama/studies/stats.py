"""Tidy results and their summary: mean and Student-t confidence interval over seeds, and the verdict on each claim.

A claim's verdict, from the 95% paired-by-seed Student-t interval of its effect (arm vs baseline, transformed),
oriented by the claim's `direction` so that positive is the paper's direction (for a "no cost" claim: the cost):
- effect claim (no margin): `reproduced` if the interval excludes 0 on the paper's side, `contradicted` if it
  excludes 0 on the other side, else `inconclusive`;
- "no cost" claim (margin m): `equivalent` (the claim reproduced) if the interval lies inside (-m, +m),
  `contradicted` if it lies entirely beyond +m (a cost larger than the margin), else `inconclusive`;
- fewer than two paired seeds: `inconclusive` (no interval).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from lit_codellama.errors import ConfigError
from lit_codellama.studies.study import Claim

RUN_COLUMNS = ["study", "preset", "arm", "seed"]


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the Student-t interval for the mean of independent seeds; NaN bounds for one seed."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        raise ValueError("t_interval needs at least one value")
    mean = statistics.fmean(values)
    if n == 1:
        return mean, math.nan, math.nan
    sem = statistics.stdev(values) / math.sqrt(n)
    half = stats.t.ppf(0.5 + confidence / 2, df=n - 1) * sem
    return mean, mean - half, mean + half


def seeds_for_half_width(
    pilot: Sequence[float], half_width: float, confidence: float = 0.95, sd_confidence: float = 0.8
) -> int:
    """Seeds for a paired Student-t interval of at most ±`half_width`, planned from a pilot's paired effects: the
    smallest n >= 2 with t(n - 1) * s / sqrt(n) <= half_width, where s is the upper `sd_confidence` bound (chi-square)
    of the pilot's SD, so that a pilot that happened to be quiet does not plan too few seeds."""
    k = len(pilot)
    if k < 2:
        raise ValueError("seeds_for_half_width needs a pilot of at least two paired effects")
    sd = statistics.stdev(pilot) * math.sqrt((k - 1) / stats.chi2.ppf(1 - sd_confidence, df=k - 1))
    n = 2
    while stats.t.ppf(0.5 + confidence / 2, df=n - 1) * sd / math.sqrt(n) > half_width:
        n += 1
    return n


def coordinate_columns(table: pd.DataFrame) -> list[str]:
    """Columns that qualify a metric (e.g. `mode`, `length`, `position`): neither run identity nor value."""
    return [c for c in table.columns if c not in (*RUN_COLUMNS, "metric", "value")]


def summarize(table: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """One row per arm x metric (x coordinates): n seeds, mean, and the interval bounds `low`/`high`."""
    keys = ["arm", "metric", *coordinate_columns(table)]
    rows = []
    # dropna=False keeps metrics whose coordinates are empty (NaN) for that metric.
    for key, group in table.groupby(keys, dropna=False, sort=False):
        mean, low, high = t_interval(group["value"].tolist(), confidence)
        rows.append({**dict(zip(keys, key, strict=True)), "n": len(group), "mean": mean, "low": low, "high": high})
    return pd.DataFrame(rows, columns=[*keys, "n", "mean", "low", "high"])


def format_summary(summary: pd.DataFrame, arm_order: Sequence[str]) -> str:
    """Metrics as rows, arms as columns, cells `mean ± half-width` (half-width omitted for a single seed)."""
    coords = [c for c in summary.columns if c not in ("arm", "metric", "n", "mean", "low", "high")]

    def cell(row: pd.Series) -> str:
        if math.isnan(row["low"]):
            return f"{row['mean']:.4g}"
        return f"{row['mean']:.4g} ± {(row['high'] - row['low']) / 2:.2g}"

    def metric_name(row: pd.Series) -> str:
        qualifiers = [f"{c}={_plain(row[c])}" for c in coords if not pd.isna(row[c])]
        return row["metric"] + (f" [{', '.join(qualifiers)}]" if qualifiers else "")

    table = summary.assign(name=summary.apply(metric_name, axis=1), cell=summary.apply(cell, axis=1))
    wide = table.pivot(index="name", columns="arm", values="cell")
    wide = wide.reindex(index=list(dict.fromkeys(table["name"])), columns=[a for a in arm_order if a in wide.columns])
    return wide.fillna("").to_string()


def _plain(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def paired_differences(table: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Each arm's value minus the baseline arm's, seed by seed (same seed: same initialisation and data order).

    The differences are a tidy table like `table` (without the baseline arm); `summarize` them for intervals
    that are usually much tighter than those of the arms themselves.
    """
    if baseline not in set(table["arm"]):
        raise ValueError(f"baseline arm {baseline!r} is not in the table (arms: {sorted(set(table['arm']))})")
    keys = ["seed", "metric", *coordinate_columns(table)]
    base = table.loc[table["arm"] == baseline, [*keys, "value"]].rename(columns={"value": "baseline"})
    # pandas matches missing coordinates (NaN) with each other in a merge, unlike SQL.
    joined = table[table["arm"] != baseline].merge(base, on=keys, how="inner")
    return joined.assign(value=joined["value"] - joined["baseline"]).drop(columns="baseline")


def claim_effects(table: pd.DataFrame, claim: Claim) -> pd.Series:
    """Per seed (index): the claim's transformed effect, from the one row per arm x seed its metric and `where`
    select in the tidy table (a coordinate given as None selects rows without it, e.g. pooled over positions). Seeds that only one of the two arms has are left out."""
    rows = table[(table["metric"] == claim.metric) & table["arm"].isin([claim.arm, claim.baseline])]
    for column, value in claim.where.items():
        if column not in table.columns:
            raise ConfigError(f"claim {claim.text!r}: runs.csv has no column {column!r} (has {list(table.columns)})")
        rows = rows[rows[column].isna() if value is None else rows[column] == value]
    if rows.empty or set(rows["arm"]) != {claim.arm, claim.baseline}:
        raise ConfigError(
            f"claim {claim.text!r}: no {claim.metric!r} rows at {dict(claim.where)} for both arms "
            f"{claim.arm!r} and {claim.baseline!r}; does the preset run the evaluation that measures it?"
        )
    if rows.duplicated(["arm", "seed"]).any():
        others = [c for c in coordinate_columns(rows) if rows[c].nunique() > 1]
        raise ConfigError(f"claim {claim.text!r}: several rows per run; fix them with `where` on {others}")
    values = rows.pivot(index="seed", columns="arm", values="value").dropna()
    arm, base = values[claim.arm], values[claim.baseline]
    return arm - base if claim.transform == "difference" else np.log(arm / base)


def verdict(claim: Claim, low: float, high: float) -> str:
    """The verdict of the module docstring, from the interval of the transformed effect."""
    if math.isnan(low):
        return "inconclusive"
    low, high = sorted((claim.direction * low, claim.direction * high))
    if claim.margin is None:
        return "reproduced" if low > 0 else "contradicted" if high < 0 else "inconclusive"
    if -claim.margin < low and high < claim.margin:
        return "equivalent"
    return "contradicted" if low > claim.margin else "inconclusive"


def assess_claims(table: pd.DataFrame, claims: Sequence[Claim], confidence: float = 0.95) -> list[dict]:
    """Per claim: its definition, `estimate`, `low`, `high` (paired by seed, Student t), `n` and `verdict`.
    What study.json records; it recomputes from runs.csv alone."""
    results = []
    for claim in claims:
        effects = claim_effects(table, claim)
        estimate, low, high = t_interval(effects.tolist(), confidence)
        results.append({
            "text": claim.text, "metric": claim.metric, "where": dict(claim.where), "arm": claim.arm,
            "baseline": claim.baseline, "transform": claim.transform, "direction": claim.direction,
            "margin": claim.margin, "primary": claim.primary, "estimate": estimate,
            "low": None if math.isnan(low) else low, "high": None if math.isnan(high) else high,
            "n": len(effects), "verdict": verdict(claim, low, high),
        })
    return results


_MEANING = {  # (verdict, has a margin) -> the verdict in plain words
    ("reproduced", False): "reproduced: the interval excludes 0 on the paper's side",
    ("contradicted", False): "contradicted: the interval excludes 0 on the side opposite to the paper's",
    ("inconclusive", False): "inconclusive: the interval includes 0 (or there is a single seed)",
    ("equivalent", True): "reproduced (equivalent): the whole interval lies inside the margin",
    ("contradicted", True): "contradicted: the whole interval lies beyond the margin, on the side of a cost",
    ("inconclusive", True): "inconclusive: the interval crosses the margin (or there is a single seed)",
}


def in_words(result: dict) -> str:
    """A claim's verdict (an `assess_claims` record) in plain words."""
    return _MEANING[result["verdict"], result["margin"] is not None]


def format_claims(results: Sequence[dict], labels: dict[str, str] | None = None) -> str:
    """The answer in plain words, primary claims first: per claim its estimate, interval and verdict."""
    labels = labels or {}
    lines = []
    for r in sorted(results, key=lambda r: not r["primary"]):
        where = ", ".join(f"{k}={_plain(v)}" for k, v in r["where"].items())
        effect = "log ratio" if r["transform"] == "log_ratio" else "difference"
        interval = "no interval (one seed)" if r["low"] is None else f"[{r['low']:+.4g}, {r['high']:+.4g}]"
        side = "higher" if r["direction"] > 0 else "lower"
        test = (f"no cost: within ±{r['margin']:.3g}" if r["margin"] is not None
                else f"paper: {labels.get(r['arm'], r['arm'])} {side}")
        lines += [
            f"{'PRIMARY' if r['primary'] else 'exploratory'}: {r['text']}",
            f"  {r['verdict'].upper()}: {r['metric']}{f' [{where}]' if where else ''}, "
            f"{labels.get(r['arm'], r['arm'])} vs {labels.get(r['baseline'], r['baseline'])}, {effect} "
            f"{r['estimate']:+.4g} {interval} ({test}; {r['n']} paired seeds, 95% t-interval)",
            f"  = {in_words(r)}",
        ]
    return "\n".join(lines)
