"""Where a result came from: the code (git commit, uncommitted changes), the libraries, the machine, the numeric
precision and the corpus. `provenance()` is the one place that collects it, for a training run's `run.json` and a
study's `study.json` alike.

    {"git": {"commit", "dirty"}, "versions": {...}, "machine": {"host", "cpu", "cpu_flags", ...},
     "precision": "bf16-mixed", "corpus": {"path", "fingerprint", "sha256"}}
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

LIBRARIES = ("torch", "lightning", "deepspeed", "transformers", "datasets", "lit_codellama")


def provenance(precision: str | None = None, corpus: str | Path | None = None) -> dict[str, Any]:
    """The code, libraries and machine of this process; `precision` as resolved for the run (e.g. the Trainer's);
    `corpus`: a built corpus directory, whose report (`corpus.json`) names its fingerprint and sha256."""
    return {
        "git": git_state(),
        "versions": {"python": platform.python_version(), **{pkg: _version(pkg) for pkg in LIBRARIES}},
        "machine": machine(),
        "precision": precision,
        "corpus": None if corpus is None else corpus_identity(corpus),
    }


RESULTS = "ablations/results"  # where studies write by default, committed results included


def git_state(source: Path = Path(__file__).resolve().parent) -> dict[str, Any]:
    """The commit of the checkout `source` (this package) lies in and whether tracked files differ from it, leaving
    out the committed study results: a study rewrites them as it runs, which says nothing of the code it ran."""
    try:
        commit = _git(source, "rev-parse", "HEAD")
        dirty = bool(_git(source, "status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                          f":(top,exclude){RESULTS}"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}  # an installed wheel: `versions` identifies the code
    return {"commit": commit, "dirty": dirty}


def machine() -> dict[str, Any]:
    """Host, CPU (model, the instruction-set flags kernels dispatch on, usable cores) and accelerators."""
    fields = cpuinfo()
    return {
        "host": platform.node(),
        "cpu": fields.get("model name") or platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the vector ISA torch's CPU kernels use
        "cpu_flags": fields.get("flags"),
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "cuda": torch.version.cuda,
    }


def corpus_identity(corpus: str | Path) -> dict[str, Any]:
    """What identifies a built corpus: its recipe fingerprint and `Corpus.sha256` (of its documents' text)."""
    from lit_codellama.data.corpus import load_corpus

    built = load_corpus(corpus)
    return {"path": str(built.path.resolve()), "fingerprint": built.report.get("fingerprint"), "sha256": built.sha256}


def cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo, e.g. "model name", "flags" (empty where there is none, e.g.
    macOS); every core of a machine is alike."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def _git(cwd: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True)
    return result.stdout.strip()


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:  # e.g. deepspeed where training runs without it
        return None
