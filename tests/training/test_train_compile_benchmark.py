"""A smoke run of benchmarks/train_compile.py (here, beside the fit tests, for their tiny corpus; nothing is timed)."""

import json
import statistics
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.slow
def test_train_compile_runs_fit_with_compile_off_and_on_and_counts_the_compile_time(corpus_dir, tmp_path):
    args = ["--preset", "cl-1m", "--data-dir", str(corpus_dir), "--val-fraction", "0.1", "--seq-len", "32", "--batch-size", "2",
            "--steps", "2", "--warmup", "1", "--rounds", "1", "--precision", "32-true", "--out", str(tmp_path)]
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "train_compile.py"), *args], cwd=REPO,
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "train_compile_32-true.json").read_text())
    assert report["cpu"]["model"] and len(report["load_average_at_start"]) == 3
    [round_] = report["rounds"]
    times, steady = round_["step_s_all"], round_["steady_step_s"]
    assert {arm: len(t) for arm, t in times.items()} == {"eager": 3, "compiled": 3}  # warm-up + steps, each arm
    # Paired: the steps of the two arms alternate, and the speedup is the median of the per-step ratios.
    assert round_["speedup"] == pytest.approx(statistics.median(
        [e / c for e, c in zip(times["eager"][1:], times["compiled"][1:])]))
    # The compiled run's first step holds the compilation, which eager's first step does not pay.
    overhead = (times["compiled"][0] - steady["compiled"]) - (times["eager"][0] - steady["eager"])
    assert round_["compile_overhead_s"] == pytest.approx(overhead) and overhead > 0
    saved = steady["eager"] - steady["compiled"]
    assert round_["break_even_steps"] == (pytest.approx(overhead / saved) if saved > 0 else None)
    assert "round 1 (cold inductor cache)" in result.stdout
