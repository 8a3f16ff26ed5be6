"""The benchmarks still run and save what they print (a smoke run on the smallest preset; nothing is timed here)."""

import json
import statistics
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
    assert set(model["generation"]) == {"batch_1", "batch_2"}
    for precision in ("32-true", "bf16-mixed"):  # both by default on CPU
        training = model["training"][precision]
        assert report["matvec_bytes_per_s"][precision] > 0
        # The same weights and batch on both sides: the same loss, so the timings compare the same work.
        tolerance = 1e-4 if precision == "32-true" else 1e-2
        assert training["ours"]["initial_loss"] == pytest.approx(training["transformers"]["initial_loss"], rel=tolerance)
        assert training["speedup"] == pytest.approx(training["ours"]["tokens_per_s"] / training["transformers"]["tokens_per_s"])
        for batch, by_precision in model["generation"].items():
            generation, size = by_precision[precision], int(batch.removeprefix("batch_"))
            assert generation["ours"]["new_tokens"] == generation["transformers"]["new_tokens"] == size * 4
            if precision == "32-true":  # bf16 rounding may break near-ties differently on the two sides
                assert generation["same_tokens"], "both sides must decode the same greedy tokens"
            assert generation["speedup"] == pytest.approx(
                generation["ours"]["tokens_per_s"] / generation["transformers"]["tokens_per_s"])
    assert model["training"]["ours_bf16_over_fp32"] > 0
    assert report["cpu"]["model"] and "generation batch 2 bf16-mixed" in result.stdout


def test_study_eval_throughput_times_each_evaluation_of_a_preset_and_saves_what_it_measured(tmp_path):
    out = tmp_path / "study_eval.json"
    args = ["--study", "fim_rate", "--preset", "tiny", "--only", "val_loss", "humaneval_loss", "--threads", "1",
            "--out", str(out)]
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "study_eval_throughput.py"), *args], cwd=REPO,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report["timings"]) == {"val_loss_s", "humaneval_loss_s"}
    assert report["total_s"] == pytest.approx(sum(report["timings"].values()), abs=0.05)
    assert report["measurements"] and report["cpu"]["model"]


def test_eval_throughput_times_execution_overlapped_with_generation_against_after_it(tmp_path):
    out = tmp_path / "eval_overlap.json"
    args = ["--overlap", "--limit", "6", "--max-new-tokens", "4", "--repeats", "2", "--out", str(out)]
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "eval_throughput.py"), *args], cwd=REPO,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["same_verdicts"] and sum(report["status_counts"].values()) == report["n_programs"] == 6
    assert len(report["overlapped_s"]) == len(report["sequential_s"]) == 2
    sequential, overlapped = report["sequential_median_s"], report["overlapped_median_s"]  # rounded to 1 ms
    rounding = 0.0005 / sequential + 0.0005 / overlapped
    assert report["ratio_sequential_over_overlapped"] == pytest.approx(sequential / overlapped, rel=rounding + 1e-3)


def test_profile_vs_transformers_splits_each_models_time_by_kind_of_op_and_saves_json(tmp_path):
    out = tmp_path / "profile.json"
    args = ["--preset", "cl-1m", "--seq-len", "32", "--batch-size", "2", "--prompt-len", "8", "--new-tokens", "4",
            "--repeats", "2", "--profiled", "1", "--top", "5", "--out", str(out)]
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "profile_vs_transformers.py"), *args],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["cpu"]["model"] and len(report["load_average_at_start"]) == 3
    for kind in ("training", "generation"):
        profiles = report[kind]["bf16-mixed"]
        for name in ("ours", "transformers"):
            p = profiles[name]
            assert sum(p["shares_of_op_time"].values()) == pytest.approx(1.0)
            assert p["shares_of_op_time"]["matmul"] > 0 and p["shares_of_op_time"]["attention"] > 0
            # AdamW's ops are found under its step in training, and generation has no optimizer.
            assert (p["shares_of_op_time"]["optimizer"] > 0) == (kind == "training")
            assert len(p["top_ops"]) == 5 and p["top_ops"][0]["self_s"] >= p["top_ops"][-1]["self_s"]
            assert p["aten_ops"] > 0 and p["unprofiled_wall_s"] > 0
        rounds = zip(profiles["transformers"]["unprofiled_wall_s_all"], profiles["ours"]["unprofiled_wall_s_all"])
        assert profiles["ours_speedup"] == pytest.approx(statistics.median(hf / ours for hf, ours in rounds))
    assert "batch-1 generation" in result.stdout
