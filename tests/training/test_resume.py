"""Interrupted runs resume exactly: SIGTERM saves a checkpoint, SIGKILL loses only the steps after the last one."""

import json
import os
import random
import shlex
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import HERE, REPO, run_cli, tiny_config
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


def _subprocess(args: list[str], cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)


def _resume_command(stderr: str) -> list[str]:
    [line] = [line for line in stderr.splitlines() if "resume with: " in line]
    return shlex.split(line.partition("resume with: ")[2])


TERMINATE_AT_2 = [{"class_path": "probes.TerminateAtStep", "init_args": {"step": 2}}]  # fires once: resumed at 3


def test_sigterm_ends_fit_unsuccessfully_with_a_checkpoint_and_the_command_that_resumes_it(corpus_dir, tmp_path):
    run_dir = tmp_path / "run"
    config = tiny_config(corpus_dir, run_dir, max_steps=6)
    config["trainer"]["callbacks"] = TERMINATE_AT_2
    stopped = run_cli(config)
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    assert torch.load(run_dir / "checkpoints/last.ckpt", weights_only=False)["global_step"] == 3
    assert not (run_dir / "model").exists()
    command = _resume_command(stopped.stderr)
    assert command[:4] == ["python", "-m", "lit_codellama", "fit"] and command[-2:] == ["--ckpt_path", "last"]
    resumed = _subprocess([sys.executable, *command[1:]], cwd=REPO)
    assert resumed.returncode == 0, resumed.stderr[-3000:]  # started past step 2, where the probe would stop it
    assert torch.load(run_dir / "checkpoints/final.ckpt", weights_only=False)["global_step"] == 6


STUDY_SCRIPT = """
import sys
from lit_codellama.studies import Arm, Preset, Study, run_cli
PRESET = Preset({config!r}, {{"a": Arm()}}, {{"val_loss": {{"max_batches": 1}}}}, seeds=1)
STUDY = Study("stop", "?", {{"small": PRESET}})
sys.exit(run_cli(STUDY))
"""


def test_sigterm_ends_a_study_unsuccessfully_and_rerunning_its_command_finishes_it(corpus_dir, tmp_path):
    config = tiny_config(corpus_dir, tmp_path / "unused", max_steps=6)
    config["trainer"]["callbacks"] = TERMINATE_AT_2
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    script = tmp_path / "stop_study.py"
    script.write_text(STUDY_SCRIPT.format(config=str(tmp_path / "train.yaml")))
    out = tmp_path / "results"
    stopped = _subprocess([sys.executable, str(script), "--out", str(out)], cwd=tmp_path)
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    assert not (out / "runs/a/seed=0/metrics.json").exists()
    command = _resume_command(stopped.stderr)
    assert command == ["python", str(script), "--out", str(out)]
    finished = _subprocess([sys.executable, *command[1:]], cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr[-3000:]  # resumed past step 2, where the probe would stop it
    assert json.loads((out / "runs/a/seed=0/metrics.json").read_text())["timings"]["train_s"] >= 0
    assert torch.load(out / "runs/a/seed=0/checkpoints/final.ckpt", weights_only=False)["global_step"] == 6
