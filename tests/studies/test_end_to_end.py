"""Every study at `--preset tiny`, through its script's command line (the `results` fixture of conftest.py; the
notebooks run on them in test_notebooks.py)."""

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from lit_codellama.studies.cli import load_study
from lit_codellama.tokenizer import Tokenizer

STUDIES = ("fim_rate", "rope_base", "long_context")


@pytest.mark.slow
@pytest.mark.parametrize("name", STUDIES)
def test_tiny_study_writes_a_tidy_table_with_every_run_and_metric(results, name):
    study = load_study(name)
    preset = study.preset("tiny")
    runs = pd.read_csv(results[name] / "runs.csv")
    assert set(runs["arm"]) == set(preset.arms)
    assert set(runs["seed"]) == set(range(preset.seeds))
    per_run = runs.groupby(["arm", "seed"]).size()
    assert per_run.nunique() == 1, "every run reports the same measurements"
    assert runs["value"].notna().all()
    summary = pd.read_csv(results[name] / "summary.csv")
    assert (summary["n"] == preset.seeds).all()
    info = json.loads((results[name] / "study.json").read_text())
    assert list(info["arms"]) == list(preset.arms) and info["preset"] == "tiny"
    assert 0 < info["data"]["largest_document_share"] < 0.2
    assert re.fullmatch("[0-9a-f]{64}", info["corpus"]["sha256"])
    for arm, spec in preset.arms.items():
        run_dir = results[name] / "runs" / arm / "seed=0"
        assert (run_dir / "metrics.json").is_file() and (run_dir / "arm.yaml").is_file()
        if spec.train:
            assert (run_dir / "model" / "model.safetensors").is_file() and (run_dir / "config.yaml").is_file()
            assert "train/loss" in pd.read_csv(run_dir / "metrics.csv").columns


@pytest.mark.slow
def test_fine_tuned_arms_start_from_their_parents_weights(results):
    from lit_codellama.studies.configs import ROPE

    config = yaml.safe_load((results["rope_base"] / "runs" / "lcft_raised_theta" / "seed=0" / "config.yaml").read_text())
    parent = results["rope_base"] / "runs" / "pretrain" / "seed=0" / "model"
    assert config["model"]["init_checkpoint"] == str(parent.resolve())
    assert config["model"]["model_config"]["rope_theta"] == ROPE["tiny"]["lcft_theta"]  # the derived raised base
    arms = json.loads((results["rope_base"] / "study.json").read_text())["arms"]
    tokenizer_vocab = Tokenizer(parent / "tokenizer.model").vocab_size
    assert arms["pretrain"]["model_config"]["vocab_size"] == tokenizer_vocab  # as trained, not the preset's
    assert (arms["pretrain"]["model_config"]["rope_theta"], arms["lcft_raised_theta"]["model_config"]["rope_theta"]) \
        == (ROPE["tiny"]["pretrain_theta"], ROPE["tiny"]["lcft_theta"])
    inference_only = next(arm for arm in arms.values() if not arm["train"] and arm["rope"])
    assert inference_only["model_config"] == {**arms[inference_only["init_from"]]["model_config"], **inference_only["rope"]}


def own_copy(results, name: str, tmp_path: Path, monkeypatch) -> Path:
    """A copy of a study's results for a test that changes them: the module's results stay as the study wrote
    them, whatever order the tests run in."""
    monkeypatch.setenv("LIT_CODELLAMA_DATA", str(results[name].parent / "corpora"))
    return Path(shutil.copytree(results[name], tmp_path / name))


@pytest.mark.slow
def test_rerunning_a_study_only_redoes_unfinished_runs(results, run_tiny, tmp_path, capsys, monkeypatch):
    out = own_copy(results, "fim_rate", tmp_path, monkeypatch)
    finished = sorted(out.glob("runs/*/seed=*/metrics.json"))
    stamps = {p: p.stat().st_mtime_ns for p in finished}
    interrupted = finished[0]
    interrupted.unlink()  # as if the run died after training, during evaluation
    before = pd.read_csv(out / "runs.csv")
    capsys.readouterr()
    threads = torch.get_num_threads()
    assert run_tiny("fim_rate", out) == 0
    assert torch.get_num_threads() == threads, "--threads must not leak out of an in-process run"
    printed = capsys.readouterr()
    assert "1 to do" in printed.out
    key = f"{interrupted.parent.parent.name}/{interrupted.parent.name}"
    assert re.search(rf"\[1/1\] {re.escape(key)} \.\.\. \d+ s \(training 0 s, evaluation \d+ s\)", printed.out)
    assert all(p.stat().st_mtime_ns == stamps[p] for p in finished if p != interrupted)
    assert interrupted.is_file()
    after = pd.read_csv(out / "runs.csv")
    pd.testing.assert_frame_equal(before, after)  # the redone evaluation gives the same numbers


@pytest.mark.slow
def test_a_run_without_weights_or_checkpoints_retrains_from_a_clean_directory(results, run_tiny, tmp_path,
                                                                               monkeypatch):
    """What a fresh clone holds: the committed logs and configs of a run, but neither its weights nor checkpoints."""
    out = own_copy(results, "fim_rate", tmp_path, monkeypatch)
    before = pd.read_csv(out / "runs.csv")
    run_dir = sorted(out.glob("runs/*/seed=*"))[-1]
    for name in ("metrics.json", "model", "checkpoints"):
        shutil.rmtree(run_dir / name) if (run_dir / name).is_dir() else (run_dir / name).unlink()
    log = run_dir / "metrics.csv"
    stale = pd.read_csv(log)
    stale.loc[len(stale)] = {"step": 999, "val/loss": 99.0}  # a validation row (no epoch) of some other run
    stale.to_csv(log, index=False)
    assert run_tiny("fim_rate", out) == 0
    assert (results["fim_rate"] / run_dir.relative_to(out) / "checkpoints").is_dir(), "the module's results are intact"
    assert "999" not in pd.read_csv(log)["step"].astype(str).tolist()
    assert (run_dir / "model" / "model.safetensors").is_file()
    pd.testing.assert_frame_equal(before, pd.read_csv(out / "runs.csv"))  # retrained: the same numbers


@pytest.mark.slow
@pytest.mark.parametrize("name", STUDIES)
def test_every_claim_of_a_tiny_study_recomputes_from_runs_csv(results, name):
    from lit_codellama.studies.analysis import StudyResults

    info = json.loads((results[name] / "study.json").read_text())
    assert len(info["claims"]) == len(load_study(name).preset("tiny").claims) > 0
    assert all(c["verdict"] in ("reproduced", "contradicted", "equivalent", "inconclusive") for c in info["claims"])
    assert StudyResults(results[name]).claims() == info["claims"]
