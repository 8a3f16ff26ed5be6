"""Tidy results and their summary: mean and Student-t confidence interval over seeds."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import pandas as pd
from scipy import stats

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
