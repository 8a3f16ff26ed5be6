#!/usr/bin/env bash
# Installs lit_codellama and everything it needs on a fresh Debian/Ubuntu machine (CPU).
#   bubblewrap: the execution sandbox for model-written code (lit_codellama/evaluation/sandbox.py)
#   torch is pinned to the CPU wheel by constraints-cpu.txt; on a GPU machine install your CUDA torch first and
#   run `pip install -e ".[dev]"` instead.
set -euo pipefail
cd "$(dirname "$0")/.."

# bubblewrap: the execution sandbox; the rest: MultiPL-E toolchains (C++, Java, PHP, TypeScript, C#).
APT_PACKAGES="bubblewrap libseccomp2 g++ default-jdk-headless libjavatuples-java php-cli nodejs node-typescript mono-mcs"
missing=$(for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  else
    echo "missing system packages: run 'sudo apt-get install -y" $missing "'" >&2
    exit 1
  fi
fi
python -m pip install -q -c constraints-cpu.txt -e ".[dev]"
