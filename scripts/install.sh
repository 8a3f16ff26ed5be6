#!/usr/bin/env bash
# Installs lit_codellama and everything it needs on a fresh Debian/Ubuntu machine (CPU).
#   bubblewrap: the execution sandbox for model-written code (lit_codellama/evaluation/sandbox.py)
#   torch is pinned to the CPU wheel by constraints-cpu.txt; on a GPU machine install your CUDA torch first and
#   run `pip install -e ".[dev]"` instead.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v bwrap >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null
  else
    echo "bubblewrap (bwrap) is missing: run 'sudo apt-get install bubblewrap' (the code-execution sandbox needs it)" >&2
    exit 1
  fi
fi
python -m pip install -q -c constraints-cpu.txt -e ".[dev]"
