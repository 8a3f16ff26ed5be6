"""Interrupted runs resume exactly: SIGTERM saves a checkpoint, SIGKILL loses only the steps after the last one."""

import random

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import run_cli, tiny_config
from lightning.pytorch.utilities.exceptions import SIGTERMException
from probes import TerminateAtStep
from safetensors.torch import load_file

from lit_codellama.training import train
from lit_codellama.training.callbacks import RNGState


@pytest.mark.slow
def test_run_stopped_by_sigterm_then_killed_by_sigkill_ends_identical_to_an_uninterrupted_run(corpus_dir, tmp_path):
    reference = train(tiny_config(corpus_dir, tmp_path / "reference", max_steps=8))

    run_dir = tmp_path / "interrupted"
    config = tiny_config(corpus_dir, run_dir, max_steps=8)
    with pytest.raises(SIGTERMException):
        train(config, callbacks=[TerminateAtStep(2)])  # step 3 completes, then the run stops
    assert torch.load(run_dir / "checkpoints/last.ckpt", weights_only=False)["global_step"] == 3

    # Resumed from step 3 in a fresh process, which dies without warning before step 6 (last checkpoint: step 4).
    config["trainer"]["callbacks"] = [{"class_path": "probes.KillAtStep", "init_args": {"step": 5}}]
    killed = run_cli(config, "--ckpt_path", "last")
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert not (run_dir / "model").exists()

    del config["trainer"]["callbacks"]
    train(config)  # resumes from last.ckpt (step 4) and replays step 5

    expected, resumed = load_file(reference / "model.safetensors"), load_file(run_dir / "model/model.safetensors")
    for name, tensor in expected.items():
        assert torch.equal(tensor, resumed[name]), name
    losses = [pd.read_csv(d / "metrics.csv").dropna(subset=["train/loss"]) for d in (tmp_path / "reference", run_dir)]
    assert list(losses[1]["step"]) == list(range(8))  # one row per step although step 5 ran twice
    assert losses[1]["train/loss"].tolist() == losses[0]["train/loss"].tolist()


def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    torch.save({"callbacks": {"RNGState": RNGState().state_dict()}}, tmp_path / "rng.ckpt")
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.random(), np.random.rand(), torch.rand(5)
    RNGState().load_state_dict(torch.load(tmp_path / "rng.ckpt", weights_only=True)["callbacks"]["RNGState"])
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(3), expected[2])
