"""Model configuration: one dataclass, the released Code Llama shapes and small presets for CPU research; and the
two helpers every YAML run config goes through (`load_yaml`, `set_dotted`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lit_codellama.errors import ConfigError
from lit_codellama.files import write_text_atomic


@dataclass
class ModelConfig:
    """The Llama 2 decoder as Code Llama uses it. Everything else is derived in `__post_init__`."""

    name: str = "custom"
    block_size: int = 4096  # training context length; RoPE itself works at any length
    vocab_size: int = 32016
    n_layer: int = 32
    n_head: int = 32
    n_kv_head: int | None = None  # grouped-query attention; None means n_head (multi-head attention)
    n_embd: int = 4096
    intermediate_size: int = 11008
    rope_theta: float = 10_000.0
    rope_scaling: float = 1.0  # linear position interpolation: positions are divided by this factor
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        self._check_types()
        checks = {
            "n_embd must be divisible by n_head": self.n_embd % self.n_head == 0,
            "n_head must be divisible by n_kv_head": self.n_head % self.n_kv_head == 0,
            "head size (n_embd / n_head) must be even for rotary embeddings": (self.n_embd // self.n_head) % 2 == 0,
            "rope_scaling must be >= 1 (it divides positions)": self.rope_scaling >= 1,
        }
        for message, ok in checks.items():
            if not ok:
                raise ConfigError(f"model config {self.name!r}: {message} (got {self.to_dict()})")

    def _check_types(self) -> None:
        """Every size a positive integer and every RoPE/norm constant a positive number, before any arithmetic."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "name":
                ok, expected = isinstance(value, str), "a string"
            elif f.type.startswith("int"):
                ok, expected = isinstance(value, int) and not isinstance(value, bool) and value >= 1, "an integer >= 1"
            else:
                number = isinstance(value, (int, float)) and not isinstance(value, bool)
                ok, expected = number and value > 0, "a number > 0"
            if not ok:
                text_number = isinstance(value, str) and "number" in expected
                hint = " (YAML reads 1e6 as text: write 1.0e+6)" if text_number else ""
                raise ConfigError(f"model config {self.name!r}: {f.name} must be {expected}, got {value!r}{hint}")

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> ModelConfig:
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise ConfigError(
                f"{source}: unknown model config field(s) {unknown}; valid fields are {cls.field_names()}"
            )
        return cls(**values)

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> ModelConfig:
        if name not in PRESETS:
            raise ConfigError(f"unknown model preset {name!r}; available presets: {sorted(PRESETS)}")
        return cls.from_dict({**PRESETS[name], "name": name, **overrides}, source=f"preset {name!r}")

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> ModelConfig:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"model config file {path} does not exist")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path} is not valid YAML: {error}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a mapping of model config fields, got {type(values).__name__}")
        if "preset" in values:  # `preset: cl-10m` plus overrides
            return cls.from_name(values.pop("preset"), **values, **overrides)
        return cls.from_dict({**values, **overrides}, source=str(path))

    def save(self, path: str | Path) -> None:
        write_text_atomic(path, yaml.safe_dump(self.to_dict(), sort_keys=False))


def resolve_model_config(spec: str | dict[str, Any], **overrides: Any) -> ModelConfig:
    """A preset name, a model-config YAML file, `{preset: name, **overrides}`, or every field as a dict."""
    if isinstance(spec, str):
        return ModelConfig.from_name(spec, **overrides) if spec in PRESETS else ModelConfig.from_file(spec, **overrides)
    spec = dict(spec)
    if "preset" in spec:
        return ModelConfig.from_name(spec.pop("preset"), **spec, **overrides)
    return ModelConfig.from_dict({**spec, **overrides}, source="model.model_config")


_CODELLAMA = dict(rope_theta=1_000_000.0, block_size=16384)

PRESETS: dict[str, dict[str, Any]] = {
    # Released shapes (the Python and Instruct variants share them). Parameter counts equal the HF checkpoints'.
    "codellama-7b": dict(n_layer=32, n_head=32, n_embd=4096, intermediate_size=11008, vocab_size=32016, **_CODELLAMA),
    "codellama-13b": dict(n_layer=40, n_head=40, n_embd=5120, intermediate_size=13824, vocab_size=32016, **_CODELLAMA),
    "codellama-34b": dict(
        n_layer=48, n_head=64, n_kv_head=8, n_embd=8192, intermediate_size=22016, vocab_size=32000, **_CODELLAMA
    ),
    "codellama-70b": dict(
        n_layer=80, n_head=64, n_kv_head=8, n_embd=8192, intermediate_size=28672, vocab_size=32016, **_CODELLAMA
    ),
    # The base model that code training starts from.
    "llama-2-7b": dict(n_layer=32, n_head=32, n_embd=4096, intermediate_size=11008, vocab_size=32000, block_size=4096),
    # Small presets for CPU research (sizes counted with their default 4096-piece vocabulary) and one GPU preset.
    "cl-1m": dict(n_layer=2, n_head=4, n_embd=96, intermediate_size=256, vocab_size=4096, block_size=512),
    "cl-10m": dict(n_layer=7, n_head=8, n_kv_head=4, n_embd=320, intermediate_size=864, vocab_size=4096, block_size=512),
    "cl-30m": dict(
        n_layer=10, n_head=8, n_kv_head=4, n_embd=512, intermediate_size=1408, vocab_size=4096, block_size=512
    ),
    "cl-100m": dict(
        n_layer=12, n_head=12, n_kv_head=4, n_embd=768, intermediate_size=2816, vocab_size=4096, block_size=1024
    ),
    "cl-1b": dict(
        n_layer=22, n_head=16, n_kv_head=4, n_embd=2048, intermediate_size=5632, vocab_size=32016, block_size=2048
    ),
}


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        where = "" if path.is_absolute() else f" (relative to {Path.cwd()}; configs/ paths start at the repo root)"
        raise ConfigError(f"config file {path} does not exist{where}")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path} must hold a mapping of config sections (trainer:, model:, data:, ...)")
    return config


def set_dotted(config: dict[str, Any], key: str, value: Any) -> None:
    """`set_dotted(c, "model.model_config.rope_theta", 1e6)`; creates missing sections."""
    *path, last = key.split(".")
    node = config
    for part in path:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {part!r} is {child!r}, not a section")
        node = child
    node[last] = value
