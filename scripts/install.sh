#!/usr/bin/env bash
# Installs lit_codellama and everything it needs on a fresh Debian/Ubuntu machine (CPU).
#   bubblewrap: the execution sandbox for model-written code (lit_codellama/evaluation/sandbox.py)
#   torch: the version in constraints-cpu.txt, as the CPU build from PyTorch's CPU wheel index when that index is
#   reachable (set TORCH_CPU_INDEX to use a mirror). Where it is not, pip takes torch from the configured index and
#   the script says so: on PyPI for Linux that is the CUDA build (it runs on CPU, ~3 GB larger); a machine whose
#   configured index already serves the CPU build (a local mirror) gets that. On a GPU machine install your CUDA
#   torch first and run `pip install -e ".[dev,hf,notebooks]"` instead.
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
TORCH_CPU_INDEX=${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}
torch_version=$(sed -n 's/^torch==//p' constraints-cpu.txt)
if python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/torch/", timeout=15)' \
    "$TORCH_CPU_INDEX" 2>/dev/null; then
  python -m pip install -q --index-url "$TORCH_CPU_INDEX" "torch==$torch_version+cpu"
else
  echo "note: $TORCH_CPU_INDEX is unreachable; torch==$torch_version comes from pip's configured index" \
    "(on PyPI for Linux: the CUDA build, which also runs on CPU)" >&2
fi
# transformers (hf): the parity tests and `convert --to hf`; notebooks: the study notebooks the tests execute.
python -m pip install -q -c constraints-cpu.txt -e ".[dev,hf,notebooks]"
# The default corpus's pinned sdists (~26 MB), so that the first build needs no network.
python -m lit_codellama data fetch --recipe default >/dev/null
