"""What the study notebooks' figures share: where a notebook finds its results, each metric's range (intervals are
clipped to it), seaborn intervals, legends beside the axes, context-length axes and paired-ratio panels.

Per-arm panels show means; the comparison between arms, with its interval, is the paired panel next to them
(arms that share a seed share initialisation and data order, so their differences have far tighter intervals).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lit_codellama.studies.analysis import StudyResults
from lit_codellama.studies.evaluations import unit_of
from lit_codellama.studies.stats import t_interval

RANGES = {"fraction": (0.0, 1.0), "nats/token": (0.0, math.inf), "bits/char": (0.0, math.inf),
          "exp(nats/token)": (1.0, math.inf)}  # by unit (`evaluations.UNITS`); differences and others: unbounded


def open_results(results_dir: str | Path) -> StudyResults:
    """A notebook's RESULTS_DIR: an absolute path, or one relative to the repository root (as the README writes it),
    wherever the kernel runs (`jupyter nbconvert` runs it in notebooks/)."""
    path = Path(results_dir)
    return StudyResults(path if path.is_absolute() else repository_root() / path)


def repository_root() -> Path:
    """The nearest directory, from the working directory up, that holds `notebooks/` and `ablations/` (a checkout);
    else the working directory itself (not the package's location: it may be installed, or another checkout)."""
    cwd = Path.cwd().resolve()
    return next((d for d in (cwd, *cwd.parents) if (d / "notebooks").is_dir() and (d / "ablations").is_dir()), cwd)


def metric_range(metric: str, difference: bool = False) -> tuple[float, float]:
    """The values a metric can take (pass@1 in [0, 1], losses >= 0, perplexity >= 1); of a difference between two
    arms' values with `difference`."""
    low, high = RANGES.get(unit_of(metric), (-math.inf, math.inf))
    return (low - high, high - low) if difference else (low, high)


def clip(metric: str, low: float, high: float, difference: bool = False) -> tuple[float, float]:
    """Interval bounds clipped to the metric's range (a t-interval over few seeds can leave it); NaN stays NaN."""
    lo, hi = metric_range(metric, difference)
    return float(np.clip(low, lo, hi)), float(np.clip(high, lo, hi))


def ci95(metric: str, difference: bool = False):
    """A seaborn `errorbar=` callable: the 95% Student-t interval over seeds (seaborn's "ci" bootstraps), clipped
    to the metric's range."""

    def errorbar(values) -> tuple[float, float]:
        _, low, high = t_interval(list(values))
        return clip(metric, low, high, difference)

    return errorbar


def limit_axis(ax, metric: str, difference: bool = False) -> None:
    """The y-axis no wider than the metric's range (no negative pass@1 below a row of zeros)."""
    lo, hi = metric_range(metric, difference)
    bottom, top = ax.get_ylim()
    ax.set_ylim(max(bottom, lo), min(top, hi))


def legend_beside(ax, title: str | None = None) -> None:
    """The legend right of the axes, where it hides no data."""
    ax.legend(title=title, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8,
              title_fontsize=8)


def context_length_axis(ax, lengths, trained_at) -> None:
    """A log2 x-axis labelled at the measured context lengths, with dotted lines where arms were trained."""
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(set(lengths)), [str(int(n)) for n in sorted(set(lengths))])
    ax.xaxis.set_minor_formatter(NullFormatter())
    for length in sorted(set(trained_at)):
        ax.axvline(length, color="grey", linestyle=":", linewidth=1)
        ax.text(length, 1.01, f"trained at {length}", transform=ax.get_xaxis_transform(), ha="center", fontsize=8)
    ax.set_xlabel("context length (tokens)")


def plot_ratios(ax, ratios: pd.DataFrame, labels: dict[str, str], colors: dict[str, Any]) -> None:
    """Paired perplexity ratios from `summarize`d log-perplexity differences: geometric mean and interval, the arms
    dodged along x so that their intervals do not overlap. `labels`: arm -> label; `colors`: label -> color."""
    arms = [arm for arm in labels if arm in set(ratios["arm"])]
    for i, arm in enumerate(arms):
        rows = ratios[ratios["arm"] == arm].sort_values("length")
        mean = np.exp(rows["mean"])
        dodge = 2 ** (0.06 * (i - (len(arms) - 1) / 2))  # a log2 axis: a constant factor is a constant offset
        ax.errorbar(
            rows["length"] * dodge,
            mean,
            yerr=[mean - np.exp(rows["low"]), np.exp(rows["high"]) - mean],
            marker="o",
            capsize=3,
            label=labels[arm],
            color=colors[labels[arm]],
        )
    ax.axhline(1.0, color="black", linewidth=0.8)
