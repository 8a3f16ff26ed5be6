"""What the study notebooks share: loading a results directory, training curves, table cells, and the RoPE
attention-decay bound of Code Llama's App. G (Fig. 9a). Figure helpers are in `plots`."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lit_codellama.studies.stats import assess_claims, claim_effects, in_words, summarize
from lit_codellama.studies.study import Claim


@dataclass
class StudyResults:
    """A study's results directory, as `lit_codellama.studies.runner` writes it."""

    path: Path

    @cached_property
    def info(self) -> dict[str, Any]:
        path = self.path / "study.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: RESULTS_DIR must be a study's results directory "
                "(run e.g. `python ablations/fim_rate.py --preset tiny --out DIR` first)"
            )
        return json.loads(path.read_text())

    def describe(self) -> str:
        """What ran, where and from what: study, preset, seeds, machine, time, commit and corpus."""
        info, machine, git = self.info, self.info["machine"], self.info["git"]
        return (f"study {info['study']!r}, preset {info['preset']!r}, seeds {info['seeds']}; {machine['cpus']} CPUs "
                f"({machine['cpu']}); training + evaluation {info['run_seconds'] / 60:.1f} min; commit "
                f"{(git.get('commit') or '?')[:10]}{' (dirty)' if git.get('dirty') else ''}; corpus sha256 "
                f"{info['corpus']['sha256']}\n{info['question']}")

    @property
    def labels(self) -> dict[str, str]:
        """arm name -> label, in the study's arm order."""
        return {arm: spec["label"] for arm, spec in self.info["arms"].items()}

    @property
    def order(self) -> list[str]:
        return list(self.labels.values())

    @cached_property
    def runs(self) -> pd.DataFrame:
        """The tidy table with an `arm_label` column."""
        runs = pd.read_csv(self.path / "runs.csv")
        return runs.assign(arm_label=runs["arm"].map(self.labels))

    def metric(self, name: str) -> pd.DataFrame:
        rows = self.runs[self.runs["metric"] == name]
        if rows.empty:
            raise KeyError(f"metric {name!r} not in {self.path / 'runs.csv'} (has: {sorted(set(self.runs['metric']))})")
        return rows.dropna(axis="columns", how="all")

    def summary(self, name: str) -> pd.DataFrame:
        table = summarize(self.metric(name).drop(columns="arm_label"))
        return table.assign(arm_label=table["arm"].map(self.labels))

    @property
    def claim_definitions(self) -> list[Claim]:
        """The claims study.json states, in its order."""
        fields = Claim.__dataclass_fields__
        return [Claim(**{k: v for k, v in record.items() if k in fields}) for record in self.info.get("claims", [])]

    def claims(self) -> list[dict]:
        """The claims' estimates, intervals and verdicts recomputed from runs.csv (they equal study.json's)."""
        return assess_claims(self.runs.drop(columns="arm_label"), self.claim_definitions)

    def claim_effects(self) -> pd.DataFrame:
        """Per claim (`claim`: its index in study.json) and seed: the transformed paired effect its verdict rests on."""
        runs = self.runs.drop(columns="arm_label")
        frames = [claim_effects(runs, claim).rename("value").rename_axis("seed").reset_index().assign(claim=i)
                  for i, claim in enumerate(self.claim_definitions)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["seed", "value", "claim"])

    def arm_setting(self, key: str) -> dict[str, Any]:
        """arm label -> a resolved training setting of the weights each arm evaluates, e.g. `data.seq_len`."""
        return {spec["label"]: spec["settings"].get(key) for spec in self.info["arms"].values()}

    @cached_property
    def curves(self) -> pd.DataFrame:
        """Training logs of every run (Lightning's `metrics.csv`), tidy: arm_label, seed, step, metric, value."""
        frames = []
        for arm, label in self.labels.items():
            for log in sorted((self.path / "runs" / arm).glob("seed=*/metrics.csv")):
                wide = pd.read_csv(log)
                long = wide.melt(
                    id_vars="step", value_vars=[c for c in wide.columns if c.endswith("/loss")], var_name="metric"
                ).dropna(subset=["value"])
                frames.append(long.assign(arm_label=label, seed=int(log.parent.name.split("=")[1])))
        if not frames:
            raise FileNotFoundError(f"no training logs (runs/<arm>/seed=<s>/metrics.csv) under {self.path}")
        return pd.concat(frames, ignore_index=True)

    @cached_property
    def context_curves(self) -> pd.DataFrame:
        """Per-position losses of the context-gain evaluation (`eval/context_gain/curve.csv` of every run), tidy:
        arm_label, seed, position, loss_full, loss_capped (averaged over the held-out documents)."""
        frames = [
            pd.read_csv(curve).assign(arm_label=label, seed=int(curve.parents[2].name.split("=")[1]))
            for arm, label in self.labels.items()
            for curve in sorted((self.path / "runs" / arm).glob("seed=*/eval/context_gain/curve.csv"))
        ]
        if not frames:
            raise FileNotFoundError(f"no context-gain curves (runs/<arm>/seed=<s>/eval/context_gain/curve.csv) "
                                    f"under {self.path}: does the preset run the context_gain evaluation?")
        return pd.concat(frames, ignore_index=True)

    def figure_path(self, name: str) -> Path:
        figures = self.path / "figures"
        figures.mkdir(exist_ok=True)
        return figures / name


def interval(mean: float, low: float, high: float, scale: float = 1.0, digits: int = 3, signed: bool = False) -> str:
    """'mean [low, high]' for tables (the bounds are omitted when there is a single seed); `signed`: with +/-."""
    form = f"{'+' if signed else ''}.{digits}g"
    if np.isnan(low):
        return f"{mean * scale:{form}}"
    return f"{mean * scale:{form}} [{low * scale:{form}}, {high * scale:{form}}]"


def claim_order(claims: list[dict]) -> list[int]:
    """Indices of study.json's claims, primary first: the order of the claims table and of the claim panels."""
    return sorted(range(len(claims)), key=lambda i: not claims[i]["primary"])


def where_text(where: dict[str, Any]) -> str:
    """A claim's coordinates, e.g. 'mode=psm, position=pooled' (None: pooled over that coordinate)."""
    def text(value) -> str:
        return "pooled" if value is None else f"{value:g}" if isinstance(value, float) else str(value)

    return ", ".join(f"{k}={text(v)}" for k, v in where.items())


def claims_table(claims: list[dict], labels: dict[str, str]) -> pd.DataFrame:
    """study.json's claims as a table numbered in `claim_order`: the claim, what measures it, the paired estimate
    with its 95% interval, the test (margin or the paper's direction) and the verdict in plain words."""
    rows = []
    for i in claim_order(claims):
        c = claims[i]
        where = where_text(c["where"])
        bounds = (math.nan, math.nan) if c["low"] is None else (c["low"], c["high"])
        side = "higher" if c["direction"] > 0 else "lower"
        rows.append({
            "": "primary" if c["primary"] else "exploratory",
            "claim": c["text"],
            "measured by": f"{c['metric']}{f' [{where}]' if where else ''}, "
                           f"{'log ratio' if c['transform'] == 'log_ratio' else 'difference'}",
            "comparison": f"{labels.get(c['arm'], c['arm'])} vs {labels.get(c['baseline'], c['baseline'])}",
            "estimate [95% interval]": interval(c["estimate"], *bounds, digits=3, signed=True),
            "test": f"no cost: inside ±{c['margin']:g}" if c["margin"] is not None else f"paper: arm {side}",
            "seeds": c["n"],
            "verdict": in_words(c),
        })
    return pd.DataFrame(rows, index=pd.RangeIndex(1, len(rows) + 1, name="#"))


def attention_decay_bound(distances, rope_theta: float, dim: int = 1024, rope_scaling: float = 1.0) -> np.ndarray:
    """Upper bound of RoPE attention at relative distance n (Su et al. 2021 §3.4.3; Sun et al. 2023):

        B(n) = (2/d) * sum_{j=1}^{d/2} |S_j(n)|,   S_j(n) = sum_{k<j} exp(i * n/rope_scaling * rope_theta^(-2k/d))

    Code Llama App. G (Fig. 9a) plots it at d = 1024 for rope_theta = 1e4 and 1e6; `rope_scaling` is linear position
    interpolation (positions divided by it). B(0) = (d/2 + 1) / 2.
    """
    n = np.asarray(distances, dtype=np.float64)[:, None] / rope_scaling
    frequencies = rope_theta ** (-2 * np.arange(dim // 2) / dim)
    partial_sums = np.cumsum(np.exp(1j * n * frequencies), axis=1)  # S_1 .. S_{d/2}
    return np.abs(partial_sums).mean(axis=1)
