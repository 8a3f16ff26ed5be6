"""What the study notebooks share: loading a results directory, training curves, table cells, and the RoPE
attention-decay bound of Code Llama's App. G (Fig. 9a). Figure helpers are in `plots`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lit_codellama.studies.stats import assess_claims, summarize
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

    def claims(self) -> list[dict]:
        """The claims' estimates, intervals and verdicts recomputed from runs.csv (they equal study.json's)."""
        fields = Claim.__dataclass_fields__
        claims = [Claim(**{k: v for k, v in record.items() if k in fields}) for record in self.info.get("claims", [])]
        return assess_claims(self.runs.drop(columns="arm_label"), claims)

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


def interval(mean: float, low: float, high: float, scale: float = 1.0, digits: int = 3) -> str:
    """'mean [low, high]' for tables (the bounds are omitted when there is a single seed)."""
    if np.isnan(low):
        return f"{mean * scale:.{digits}g}"
    return f"{mean * scale:.{digits}g} [{low * scale:.{digits}g}, {high * scale:.{digits}g}]"


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
