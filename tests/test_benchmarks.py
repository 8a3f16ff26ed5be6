"""The benchmarks still run and save what they print (a smoke run on the smallest preset; nothing is timed here)."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_model_throughput_compares_with_transformers_and_saves_json(tmp_path):
    args = ["--presets", "cl-1m", "--rounds", "1", "--seq-len", "32", "--batch-size", "2", "--gen-batches", "1", "2",
            "--prompt-len", "8", "--new-tokens", "4", "--out", str(tmp_path)]
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "model_throughput.py"), *args],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "model_throughput_cpu.json").read_text())
    model = report["models"]["cl-1m"]
    assert model["training"]["speedup"] > 0 and report["matvec_bytes_per_s"] > 0
    assert set(model["generation"]) == {"batch_1", "batch_2"}
    assert "generation batch 2" in result.stdout
