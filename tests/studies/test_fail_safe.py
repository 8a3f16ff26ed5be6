"""A study survives what happens to long jobs: torn files, a second copy of itself, being run from elsewhere."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

import lit_codellama

from lit_codellama.checkpoint import OUR_WEIGHTS, load_model, save_model
from lit_codellama.config import ModelConfig
from lit_codellama.errors import ConfigError
from lit_codellama.model import Llama
from lit_codellama.studies import Arm, Plan, Preset, Run, Study
from lit_codellama.studies.cli import load_study
from lit_codellama.studies.runner import execute, execute_run

ROOT = Path(lit_codellama.__file__).parents[1]
TINY = ModelConfig(n_layer=1, n_head=2, n_embd=16, intermediate_size=32, vocab_size=64, block_size=32)
STUDY = Study(
    "safe",
    "?",
    {"small": Preset({"model": {"lr": 1e-3}, "trainer": {"max_steps": 5}}, {"a": Arm()}, {"val_loss": {}}, seeds=1)},
)


@pytest.fixture
def fake_training(monkeypatch):
    """`train` and `evaluate` replaced by stand-ins that record their calls: what is tested is the runner's choice."""
    calls = []

    def train(config, run_dir, callbacks=()):
        calls.append(run_dir)
        save_model(Llama(TINY), run_dir / "model")

    monkeypatch.setattr("lit_codellama.training.cli.train", train)
    monkeypatch.setattr("lit_codellama.studies.evaluations.evaluate", lambda *args: ([], {}))
    return calls


def test_torn_weights_count_as_unfinished_and_the_run_retrains_from_a_clean_directory(tmp_path, fake_training):
    plan = Plan.make(STUDY, out=tmp_path)
    run_dir = plan.run_dir(Run("a", 0))
    save_model(Llama(TINY), run_dir / "model")
    weights = run_dir / "model" / OUR_WEIGHTS
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # the export was cut short
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"stale")
    execute_run(plan, Run("a", 0))
    assert fake_training == [run_dir]
    assert not (run_dir / "checkpoints").exists()  # not resumed from the checkpoints of a suspect run
    load_model(run_dir / "model")  # complete again
    assert json.loads((run_dir / "metrics.json").read_text())["arm"] == "a"
    execute_run(plan, Run("a", 0))
    assert fake_training == [run_dir], "complete weights are not trained again"


def test_an_interrupted_save_leaves_the_previous_weights_whole(tmp_path, monkeypatch):
    save_model(Llama(TINY), tmp_path)
    before = (tmp_path / OUR_WEIGHTS).read_bytes()

    def torn_save(state, path, metadata=None):
        open(path, "wb").write(b"\x00" * 100)  # a few bytes, then the process is interrupted
        raise KeyboardInterrupt

    monkeypatch.setattr("lit_codellama.checkpoint.save_file", torn_save)
    with pytest.raises(KeyboardInterrupt):
        save_model(Llama(TINY), tmp_path)
    assert (tmp_path / OUR_WEIGHTS).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model_config.yaml", OUR_WEIGHTS])  # no temporary


def test_a_second_study_on_the_same_results_directory_is_refused_naming_the_holder(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from pathlib import Path
            from lit_codellama.studies.runner import _exclusive
            with _exclusive(Path({str(tmp_path)!r})):
                print("holding", flush=True)
                sys.stdin.read()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])},
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(ConfigError, match=rf"{tmp_path} is in use by another study \(pid {holder.pid} on "):
            execute(Plan.make(STUDY, out=tmp_path))
    finally:
        holder.communicate("")
    assert holder.returncode == 0
    assert not (tmp_path / ".lock.holder").exists()


def test_default_results_and_study_names_resolve_against_the_current_directory(tmp_path, monkeypatch):
    script = tmp_path / "ablations" / "mine.py"
    script.parent.mkdir()
    script.write_text(
        "from lit_codellama.studies import Arm, Preset, Study\n"
        "STUDY = Study('mine', '?', {'small': Preset('base.yaml', {'a': Arm()}, {'val_loss': {}}, seeds=1)})\n"
    )
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({"model": {"lr": 0.5}, "trainer": {"max_steps": 3}}))
    monkeypatch.chdir(tmp_path)
    plan = Plan.make(load_study("mine"))
    assert plan.out == tmp_path / "ablations" / "results" / "mine"
    assert plan.train_config(Run("a", 0))["model"]["lr"] == 0.5  # the preset's YAML, found from here
