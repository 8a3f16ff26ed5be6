"""A study is data: arms (name -> training-config overrides), presets (scale), and the evaluations to run.

    Study("fim_rate", question, presets={"tiny": Preset(...), "small": Preset(...), "paper": Preset(...)})

A preset holds the base training config (the content of a `configs/train/*.yaml`, or its path), the arms, the
evaluations with their settings, the claims under test (`Claim`, stated before any run), and the default number of
seeds. `Study.runs` expands arms x seeds into runs in an
order where every arm comes after the arm it starts from (`Arm.init_from`).
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lit_codellama.config import load_yaml
from lit_codellama.errors import ConfigError

ROPE_KEYS = ("rope_theta", "rope_scaling")  # `load_for_inference` arguments an arm may set
_ARM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]*$")  # it becomes a directory name


@dataclass(frozen=True)
class Arm:
    """One condition of a study.

    overrides: dotted keys into the training config, e.g. `{"data.fim_rate": 0.5}` or
        `{"model.model_config.rope_theta": 1e6}`.
    config: the training config this arm starts from instead of the preset's (a dict or a YAML path, relative to
        the current directory like `fit --config`), e.g. a later stage such as `configs/train/lcft-7b.yaml`.
    init_from: another arm whose final weights (same seed) this arm starts from, e.g. long-context fine-tuning
        from a pretrained arm; the runner sets `model.init_checkpoint`.
    train: False evaluates `init_from`'s weights as they are (with `rope` applied), without training.
    rope: RoPE settings changed at evaluation time (`load_for_inference`'s), e.g. `{"rope_theta": 1e6}`;
        keys `rope_theta` and `rope_scaling`.
    label: how figures and tables name the arm (default: its name).
    """

    overrides: Mapping[str, Any] = field(default_factory=dict)
    config: Mapping[str, Any] | str | None = None
    init_from: str | None = None
    train: bool = True
    rope: Mapping[str, float] | None = None
    label: str = ""


TRANSFORMS = ("difference", "log_ratio")


@dataclass(frozen=True)
class Claim:
    """One of the paper's findings as a test on the tidy table, stated before any result is seen.

    text: the paper's claim, in words, with its source (e.g. "Table 5").
    metric, where: the measurement (a `metric` of runs.csv) and its coordinates, e.g. `{"fraction": 1.0}`.
    arm, baseline: the two arms compared seed by seed (same seed: same initialisation and data order).
    transform: per seed, `difference` = arm - baseline, or `log_ratio` = ln(arm / baseline) (a relative change).
    direction: the sign the paper's finding gives the transformed effect, +1 (arm higher) or -1 (arm lower).
    margin: for a "no cost" claim, the equivalence margin on the transformed scale (e.g. 0.01 for a log ratio:
        about 1%); `direction` then names which side is the cost. None for an effect claim.
    primary: whether the study is designed (seeds, tokens) to resolve this claim; the rest are exploratory.
    """

    text: str
    metric: str
    arm: str
    baseline: str
    where: Mapping[str, Any] = field(default_factory=dict)
    transform: str = "difference"
    direction: int = 1
    margin: float | None = None
    primary: bool = True


@dataclass(frozen=True)
class Preset:
    """A study at one scale.

    train: the base training config (LightningCLI layout: `model`, `data`, `trainer`, ...) or a YAML path (relative
        to the current directory, like `fit --config`).
    evaluations: evaluation name (see `studies.evaluations.EVALUATIONS`) -> settings.
    notes: why these sizes (model, steps, subsets) and what the preset costs.
    """

    train: Mapping[str, Any] | str
    arms: Mapping[str, Arm]
    evaluations: Mapping[str, Mapping[str, Any]]
    seeds: int = 3
    notes: str = ""
    claims: tuple[Claim, ...] = ()

    def train_config(self, arm: str) -> dict[str, Any]:
        """A fresh copy of the training config `arm` starts from (its own, or the preset's), before overrides."""
        spec = self.arms[arm].config if self.arms[arm].config is not None else self.train
        if isinstance(spec, Mapping):
            return copy.deepcopy(dict(spec))
        try:
            return load_yaml(spec)
        except ConfigError as error:
            raise ConfigError(f"arm {arm!r}: training {error}") from None


@dataclass(frozen=True)
class Run:
    arm: str
    seed: int

    @property
    def key(self) -> str:
        """The run's directory, relative to the study's `runs/`."""
        return f"{self.arm}/seed={self.seed}"


@dataclass(frozen=True)
class Study:
    name: str
    question: str  # the paper's claim under test, printed with the results
    presets: Mapping[str, Preset]
    default_preset: str = "small"

    def __post_init__(self) -> None:
        for name, preset in self.presets.items():
            _check_arms(f"study {self.name!r}, preset {name!r}", preset.arms)
            _check_evaluations(f"study {self.name!r}, preset {name!r}", preset.evaluations)
            _check_claims(f"study {self.name!r}, preset {name!r}", preset.claims, preset.arms)

    def preset(self, name: str) -> Preset:
        if name not in self.presets:
            raise ConfigError(f"study {self.name!r} has no preset {name!r}; choose from {sorted(self.presets)}")
        return self.presets[name]

    def runs(self, preset: str, seeds: int | None = None) -> list[Run]:
        """Arms x seeds (seeds 0..n-1), each arm after the arm it starts from."""
        p = self.preset(preset)
        n = p.seeds if seeds is None else seeds
        if n < 1:
            raise ConfigError(f"--seeds must be at least 1, got {n}")
        return [Run(arm, seed) for arm in _dependency_order(p.arms) for seed in range(n)]


def _check_arms(where: str, arms: Mapping[str, Arm]) -> None:
    if not arms:
        raise ConfigError(f"{where}: no arms")
    for name, arm in arms.items():
        if not _ARM_NAME.match(name):
            raise ConfigError(f"{where}: arm name {name!r} must be a plain directory name (letters, digits, _.=+-)")
        if arm.init_from is not None and arm.init_from not in arms:
            raise ConfigError(f"{where}: arm {name!r} starts from unknown arm {arm.init_from!r}; arms: {sorted(arms)}")
        if not arm.train and arm.init_from is None:
            raise ConfigError(f"{where}: arm {name!r} does not train, so it needs `init_from` (weights to evaluate)")
        if not arm.train and (arm.overrides or arm.config is not None):
            raise ConfigError(f"{where}: arm {name!r} does not train; its training config would be ignored")
        if unknown := sorted(set(arm.rope or {}) - set(ROPE_KEYS)):
            raise ConfigError(f"{where}: arm {name!r} rope has unknown key(s) {unknown}; valid keys: {list(ROPE_KEYS)}")
    _dependency_order(arms)  # raises on cycles


def _check_evaluations(where: str, evaluations: Mapping[str, Mapping[str, Any]]) -> None:
    from lit_codellama.studies.evaluations import EVALUATIONS

    for name, settings in evaluations.items():
        if name not in EVALUATIONS:
            raise ConfigError(f"{where}: unknown evaluation {name!r}; available: {sorted(EVALUATIONS)}")
        try:
            inspect.signature(EVALUATIONS[name]).bind(None, **settings)
        except TypeError as e:
            raise ConfigError(f"{where}: evaluation {name!r} settings {dict(settings)}: {e}") from None


def _check_claims(where: str, claims: tuple[Claim, ...], arms: Mapping[str, Arm]) -> None:
    for claim in claims:
        what = f"{where}: claim {claim.text!r}"
        for arm in (claim.arm, claim.baseline):
            if arm not in arms:
                raise ConfigError(f"{what} compares unknown arm {arm!r}; arms: {sorted(arms)}")
        if claim.arm == claim.baseline:
            raise ConfigError(f"{what} compares arm {claim.arm!r} with itself; give two different arms")
        if claim.transform not in TRANSFORMS:
            raise ConfigError(f"{what}: transform {claim.transform!r} must be one of {TRANSFORMS}")
        if claim.direction not in (1, -1):
            raise ConfigError(f"{what}: direction must be +1 (arm higher) or -1 (arm lower), got {claim.direction!r}")
        if claim.margin is not None and not claim.margin > 0:
            raise ConfigError(f"{what}: margin must be positive (or None for an effect claim), got {claim.margin!r}")


def _dependency_order(arms: Mapping[str, Arm]) -> list[str]:
    order: list[str] = []
    for name in arms:
        chain = [name]
        while (parent := arms[chain[-1]].init_from) is not None:
            if parent in chain:
                raise ConfigError(f"arms start from each other in a cycle: {' -> '.join([*chain, parent])}")
            chain.append(parent)
        order += [arm for arm in reversed(chain) if arm not in order]
    return order
