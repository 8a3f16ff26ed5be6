"""Command-line values checked where they enter: a parser whose every mistake is one `error:` line (exit status 2),
argparse types for numbers within a range and comma-separated lists of them, and the output-directory check that
runs before any work."""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from lit_codellama.errors import ConfigError


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, reporting a bad argument in one line that names it (subcommand parsers inherit this)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (`{self.prog} --help` lists the options)\n")


class Number:
    """An argparse type: `kind` (int or float) at least `low` (above it if `strict`) and at most `high`."""

    def __init__(self, kind: type, low: float, high: float | None = None, strict: bool = False) -> None:
        self.kind, self.low, self.high, self.strict = kind, low, high, strict
        noun = "an integer" if kind is int else "a number"
        if high is not None:
            self.description = f"{noun} in [{low}, {high}]"
        else:
            self.description = f"{noun} {'>' if strict else '>='} {low}"

    def __call__(self, text: str) -> Any:
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {self.description}, got {text!r}") from None
        above = value > self.low if self.strict else value >= self.low
        if not (above and (self.high is None or value <= self.high)):  # also refuses NaN
            raise argparse.ArgumentTypeError(f"must be {self.description}, got {text!r}")
        return value

    def __repr__(self) -> str:
        return self.description


positive_int = Number(int, 1)
positive_float = Number(float, 0, strict=True)
non_negative_float = Number(float, 0)
fraction = Number(float, 0, 1)


def comma_list(item: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    """An argparse type for `1,10,100`: every item checked by `item`."""

    def parse(text: str) -> list[Any]:
        values = []
        for piece in text.split(","):
            try:
                values.append(item(piece.strip()))
            except argparse.ArgumentTypeError as error:
                raise argparse.ArgumentTypeError(f"{text!r}: {error}") from None
        return values

    return parse


def check_output_dir(path: str | Path) -> Path:
    """`path` if it is, or can be made, a writable directory: checked before the work whose results it holds."""
    path = Path(path)
    existing = next(p for p in (path.absolute(), *path.absolute().parents) if p.exists())
    if not existing.is_dir():
        what = f"{path} is a file" if existing == path.absolute() else f"{existing} is a file, so {path} cannot be made"
        raise ConfigError(f"output directory {what}; pass a directory")
    try:  # a real write, not os.access: root passes permission bits but not, e.g., a read-only or virtual file system
        tempfile.TemporaryDirectory(dir=existing).cleanup()
    except OSError as error:
        raise ConfigError(
            f"output directory {path}: {existing} is not writable ({error.strerror}); pass another directory"
        ) from None
    return path


def output_dir(text: str) -> Path:
    """An argparse type: `check_output_dir`."""
    try:
        return check_output_dir(text)
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
