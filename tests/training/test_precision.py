"""`precision: auto`: bf16-mixed only where the CPU has bf16 matrix units that measure faster; recorded in run.json."""

import json

import pandas as pd
import pytest
from conftest import tiny_config

from lit_codellama import precision
from lit_codellama.precision import resolve_precision
from lit_codellama.training import train


@pytest.mark.parametrize(
    "flags, speedup, expected",
    [
        ([], 9.0, "32-true"),  # e.g. an AMD EPYC without AMX/AVX512-BF16: no probe is trusted
        (["amx_bf16"], 1.1, "32-true"),  # the units are there but bf16 does not measure faster
        (["amx_bf16", "avx512_bf16"], 3.5, "bf16-mixed"),
    ],
)
def test_auto_precision_takes_bf16_only_where_the_cpu_has_bf16_units_that_measure_faster(
    monkeypatch, flags, speedup, expected
):
    monkeypatch.setattr(precision, "cpu_info", lambda: {"model": "test CPU", "bf16_flags": flags, "capability": "X"})
    monkeypatch.setattr(precision, "bf16_matmul_speedup", lambda: speedup)
    assert resolve_precision("auto", "cpu") == expected
    assert resolve_precision("16-mixed", "cpu") == "16-mixed"  # an explicit choice is kept


def test_fit_with_auto_precision_records_the_choice_in_run_json(monkeypatch, corpus_dir, tmp_path):
    monkeypatch.setattr(precision, "cpu_info", lambda: {"model": "test CPU", "bf16_flags": [], "capability": "X"})
    run_dir = tmp_path / "run"
    config = tiny_config(corpus_dir, run_dir, max_steps=2)
    config["trainer"]["precision"] = "auto"
    train(config, run_dir=run_dir)
    metadata = json.loads((run_dir / "run.json").read_text())
    assert metadata["precision"] == "32-true"
    assert metadata["precision_choice"] == {
        "requested": "auto", "resolved": "32-true", "cpu": {"model": "test CPU", "bf16_flags": [], "capability": "X"}
    }


def test_a_short_bf16_run_tracks_the_float32_loss_curve(corpus_dir, tmp_path):
    # bf16 autocast runs on any CPU (emulated where there are no bf16 units), so this needs no skip.
    curves = {}
    for name in ("32-true", "bf16-mixed"):
        run_dir = tmp_path / name
        config = tiny_config(corpus_dir, run_dir, max_steps=20, every=20)
        config["trainer"].update(precision=name, val_check_interval=20)
        train(config, run_dir=run_dir)
        curves[name] = pd.read_csv(run_dir / "metrics.csv").dropna(subset=["train/loss"])["train/loss"].to_numpy()
    fp32, bf16 = curves["32-true"], curves["bf16-mixed"]
    assert len(fp32) == len(bf16) == 20
    assert fp32[-1] < fp32[0] - 1.0  # the curve being tracked does fall
    # Tolerance: 0.05 nats per step (bf16's 8-bit mantissa in the matmuls; the loss itself is float32).
    assert abs(bf16 - fp32).max() < 0.05


def test_the_bf16_probe_draws_nothing_from_the_seeded_global_generator():
    """The probe runs inside a process's first `auto` run, after seeding: drawing from the global generator there
    gave that run another initialisation than the same seed gets in any later run (a study's first seed did)."""
    import torch

    torch.manual_seed(0)
    expected = torch.rand(4)
    torch.manual_seed(0)
    precision.bf16_matmul_speedup.__wrapped__(size=64, repeats=1)
    assert torch.equal(torch.rand(4), expected)
