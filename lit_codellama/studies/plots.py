"""What the study notebooks' figures share: where a notebook finds its results, the figure style, each metric's range
(intervals are clipped to it), seaborn intervals, legends beside the axes, context-length axes, the claim panels and
paired-effect panels.

Per-arm panels show means; the comparison between arms, with its interval, is the paired panel next to them
(arms that share a seed share initialisation and data order, so their differences have far tighter intervals).
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lit_codellama.studies.analysis import StudyResults, claim_order, where_text
from lit_codellama.studies.evaluations import unit_of
from lit_codellama.studies.stats import paired_differences, summarize, t_interval

RANGES = {"fraction": (0.0, 1.0), "nats/token": (0.0, math.inf), "bits/char": (0.0, math.inf),
          "exp(nats/token)": (1.0, math.inf)}  # by unit (`evaluations.UNITS`); differences and others: unbounded


def set_style() -> None:
    """A white grid at font sizes that stay readable in a rendered notebook and a README figure (matplotlib's copy
    of seaborn's style, so that the library needs no seaborn); tables show whole cells (a claim's text and verdict
    are sentences)."""
    import matplotlib.pyplot as plt

    pd.set_option("display.max_colwidth", None)
    plt.style.use(["seaborn-v0_8-whitegrid", "seaborn-v0_8-deep"])
    plt.rcParams.update({
        "font.size": 11, "axes.titlesize": 11, "axes.labelsize": 11, "xtick.labelsize": 10, "ytick.labelsize": 10,
        "legend.fontsize": 10, "legend.title_fontsize": 10, "figure.titlesize": 12, "savefig.dpi": 120,
        "savefig.bbox": "tight"})


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
    ax.legend(title=title, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)


def context_length_axis(ax, lengths, trained_at) -> None:
    """A log2 x-axis labelled at the measured context lengths, with dotted lines where arms were trained."""
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(set(lengths)), [str(int(n)) for n in sorted(set(lengths))])
    ax.xaxis.set_minor_formatter(NullFormatter())
    for length in sorted(set(trained_at)):
        ax.axvline(length, color="grey", linestyle=":", linewidth=1)
        ax.text(length, 1.01, f"trained at {length}", transform=ax.get_xaxis_transform(), ha="center", fontsize=9)
    ax.set_xlabel("context length (tokens)")


VERDICT_COLORS = {"reproduced": "tab:green", "equivalent": "tab:green", "contradicted": "tab:red",
                  "inconclusive": "dimgrey"}


def plot_claims(claims: list[dict], effects: pd.DataFrame, labels: dict[str, str],
                paper: dict[int, tuple[float, str]] | None = None, ncols: int = 3):
    """One panel per claim, numbered as `analysis.claims_table` numbers them (primary first): each seed's paired
    effect (grey dots), their mean and 95% interval (coloured by the verdict), 0, and a "no cost" claim's margin as a
    green band. `effects`: `StudyResults.claim_effects()`; `paper`: claim index -> (value, label) of the paper's
    comparable effect, drawn as a dashed line. Returns the figure."""
    import matplotlib.pyplot as plt

    order = claim_order(claims)
    nrows = math.ceil(len(order) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.4 * ncols, 3.5 * nrows), squeeze=False)
    for number, (ax, i) in enumerate(zip(axes.flat, order), 1):
        c = claims[i]
        seeds = effects.loc[effects["claim"] == i, "value"].to_numpy()
        ax.scatter(np.linspace(-0.15, 0.15, len(seeds)), seeds, color="grey", s=20, alpha=0.8, zorder=3,
                   label="one seed's paired effect")
        if c["low"] is not None:
            low, high = (c["low"], c["high"]) if c["transform"] == "log_ratio" else \
                clip(c["metric"], c["low"], c["high"], difference=True)
            ax.errorbar([0.5], [c["estimate"]], yerr=[[c["estimate"] - low], [high - c["estimate"]]], fmt="o",
                        capsize=5, color=VERDICT_COLORS[c["verdict"]], zorder=4, label="mean, 95% t-interval")
        else:
            ax.plot([0.5], [c["estimate"]], "o", color=VERDICT_COLORS[c["verdict"]], label="mean (one seed)")
        ax.axhline(0.0, color="black", linewidth=0.8)
        if c["margin"] is not None:
            ax.axhspan(-c["margin"], c["margin"], color="tab:green", alpha=0.15, label="no-cost margin")
        if paper and i in paper:
            value, source = paper[i]
            ax.axhline(value, color="tab:purple", linestyle="--", linewidth=1.2, label="the paper's effect")
            ax.annotate(source, (1.0, value), xycoords=("axes fraction", "data"), ha="right", va="bottom",
                        fontsize=9, color="tab:purple")
        where = where_text(c["where"])
        kind = "PRIMARY" if c["primary"] else "exploratory"
        measured = f"#{number} {kind}: {c['metric']}{f' [{where}]' if where else ''}"
        compared = f"{labels.get(c['arm'], c['arm'])} vs {labels.get(c['baseline'], c['baseline'])}"
        ax.set_title("\n".join([*textwrap.wrap(measured, 50), *textwrap.wrap(compared, 50)]), fontsize=10)
        ax.set_xlabel(c["verdict"], color=VERDICT_COLORS[c["verdict"]], fontweight="bold")  # below: hides no data
        ax.set_xlim(-0.4, 0.9)
        ax.set_xticks([])
        ax.set_ylabel("log ratio (≈ relative change)" if c["transform"] == "log_ratio"
                      else f"difference ({(unit_of(c['metric']) or 'value').removesuffix(' (difference)')})")
    for ax in axes.flat[len(order):]:
        ax.set_visible(False)
    handles = {label: h for ax in axes.flat for h, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(handles))
    fig.tight_layout()
    return fig


def plot_paired(ax, paired: pd.DataFrame, x: str, labels: dict[str, str], colors: dict[str, Any],
                log_x: bool = True, ratio: bool = False) -> None:
    """Paired effects against a coordinate `x`, from a `summarize`d `paired_differences` table: per arm the mean and
    its 95% interval, the arms dodged along x so that their intervals do not overlap. `ratio`: the table holds log
    ratios, shown as ratios (geometric mean). `labels`: arm -> label; `colors`: label -> color."""
    arms = [arm for arm in labels if arm in set(paired["arm"])]
    xs = np.sort(paired[x].unique())
    step = np.min(np.diff(xs)) if len(xs) > 1 else 1.0
    show = np.exp if ratio else (lambda v: np.asarray(v, dtype=float))
    for i, arm in enumerate(arms):
        rows = paired[paired["arm"] == arm].sort_values(x)
        k = i - (len(arms) - 1) / 2
        at = rows[x] * 2 ** (0.06 * k) if log_x else rows[x] + 0.08 * step * k  # log2 axis: a factor is an offset
        mean, low, high = show(rows["mean"]), show(rows["low"]), show(rows["high"])
        ax.errorbar(at, mean, yerr=[mean - low, high - mean], marker="o", capsize=3, label=labels[arm],
                    color=colors[labels[arm]])
    ax.axhline(1.0 if ratio else 0.0, color="black", linewidth=0.8)


def arm_palette(results: StudyResults) -> dict[str, Any]:
    """label -> color, the same for an arm in every figure of a notebook (the style's color cycle)."""
    import matplotlib.pyplot as plt

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {label: colors[i % len(colors)] for i, label in enumerate(results.order)}


def plot_against_reference(results: StudyResults, metric: str, x: str, reference: str, ylabel: str,
                           ratio: bool = False, trained_at=(), chance: float | None = None):
    """Two panels over a length coordinate `x` (log2 axis): left, each arm minus `reference` seed by seed (mean and
    95% interval; `ratio`: log ratios shown as ratios); right, each arm's mean over seeds (no per-arm intervals: the
    left panel carries the comparison), with a dotted line where arms were trained and `chance` dashed. Rows without
    `x` (pooled) are left out. Returns the figure."""
    import matplotlib.pyplot as plt

    rows = results.metric(metric).dropna(subset=[x])
    if "position" in rows and x != "position":
        rows = rows[rows["position"].isna()]  # pooled over key positions
    table = rows.drop(columns="arm_label")
    if ratio:
        table = table.assign(value=np.log(table["value"]))
    paired = summarize(paired_differences(table, reference))
    if not ratio:  # a difference of fractions stays in [-1, 1]
        bounds = [clip(metric, r.low, r.high, difference=True) for r in paired.itertuples()]
        paired[["low", "high"]] = bounds if bounds else paired[["low", "high"]]
    palette = arm_palette(results)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.2))
    plot_paired(left, paired, x, results.labels, palette, ratio=ratio)
    left.set_ylabel(f"{'ratio to' if ratio else 'minus'} {results.labels[reference]}\n(paired by seed)")
    means = rows.groupby(["arm_label", x])["value"].mean().reset_index()
    for label, marker in zip(results.order, "osD^vP*X", strict=False):
        arm = means[means["arm_label"] == label].sort_values(x)
        right.plot(arm[x], arm["value"], marker=marker, color=palette[label], label=label)
    right.set_ylabel(f"{ylabel}, mean over seeds")
    if chance is not None:
        right.axhline(chance, color="black", linestyle="--", linewidth=1, label=f"chance ({chance:g})")
    for ax in (left, right):
        context_length_axis(ax, rows[x], trained_at)
    legend_beside(right)
    fig.tight_layout()
    return fig


def plot_position_curves(results: StudyResults, window: int, trained_at=(), smooth: int = 0):
    """Per-position loss, one panel per arm: with all preceding tokens (full) and with at most `window` (capped),
    mean over seeds and documents, a running mean over `smooth` positions (default window / 4). Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    curves = results.context_curves.groupby(["arm_label", "position"], sort=False)[["loss_full", "loss_capped"]]
    curves = curves.mean().reset_index()
    smooth = smooth or max(1, window // 4)
    ncols = min(3, len(results.order))
    nrows = math.ceil(len(results.order) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows), squeeze=False, sharey=True)
    for ax, label in zip(axes.flat, results.order):
        arm = curves[curves["arm_label"] == label].sort_values("position")
        for column, style, name in (("loss_full", "-", "full context"), ("loss_capped", "--", f"at most {window}")):
            ax.plot(arm["position"], arm[column].rolling(smooth, min_periods=1).mean(), style, label=name)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.axvline(window, color="grey", linewidth=1)
        for length in sorted(set(trained_at)):
            ax.axvline(length, color="grey", linestyle=":", linewidth=1)
        ax.set(title=label, xlabel="position in the document (tokens)", ylabel="loss (nats/token)")
    for ax in axes.flat[len(results.order):]:
        ax.set_visible(False)
    legend_beside(axes.flat[min(ncols, len(results.order)) - 1])
    fig.tight_layout()
    return fig
