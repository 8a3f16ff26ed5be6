"""The benchmarks still run and save what they print (a smoke run on the smallest preset; nothing is timed here)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_model_throughput_compares_with_transformers_and_saves_json(tmp_path):
    args = ["--presets", "cl-1m", "--rounds", "1", "--seq-len", "32", "--batch-size", "2", "--gen-batches", "1", "2",
            "--prompt-len", "8", "--new-tokens", "4", "--out", str(tmp_path)]
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "model_throughput.py"), *args],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "model_throughput_cpu.json").read_text())
    model = report["models"]["cl-1m"]
    training = model["training"]
    assert set(training) >= {"ours", "transformers", "speedup"} and report["matvec_bytes_per_s"] > 0
    # The same weights and batch on both sides: the same loss, so the timings compare the same work.
    assert training["ours"]["initial_loss"] == pytest.approx(training["transformers"]["initial_loss"], rel=1e-4)
    assert training["speedup"] == pytest.approx(training["ours"]["tokens_per_s"] / training["transformers"]["tokens_per_s"])
    assert set(model["generation"]) == {"batch_1", "batch_2"}
    for batch, generation in model["generation"].items():
        size = int(batch.removeprefix("batch_"))
        assert generation["ours"]["new_tokens"] == generation["transformers"]["new_tokens"] == size * 4
        assert generation["same_tokens"], "both sides must decode the same greedy tokens"
        assert generation["speedup"] == pytest.approx(
            generation["ours"]["tokens_per_s"] / generation["transformers"]["tokens_per_s"])
    assert "generation batch 2" in result.stdout
