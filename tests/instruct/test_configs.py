import inspect
import json
from pathlib import Path

import pytest
import yaml

from lit_codellama.checkpoint import load_model
from lit_codellama.config import resolve_model_config
from lit_codellama.instruct.datamodule import InstructDataModule
from lit_codellama.training import CodeLlamaLM, train

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "train"
STAGES = ["instruct-7b", "instruct-small", "unnatural-34b", "unnatural-small"]


def load(stage: str) -> dict:
    return yaml.safe_load((CONFIGS / f"{stage}.yaml").read_text())


@pytest.mark.parametrize("stage", STAGES)
def test_stage_configs_name_valid_model_and_data_settings(stage):
    config = load(stage)
    assert config["data"]["class_path"] == "lit_codellama.instruct.InstructDataModule"
    InstructDataModule(**config["data"]["init_args"])  # validates every setting; the corpus is read at setup
    resolve_model_config(config["model"]["model_config"])
    assert set(config["model"]) <= set(inspect.signature(CodeLlamaLM).parameters)


def test_paper_scale_instruct_batch_is_524288_tokens_and_about_5b_tokens_in_all():
    config = load("instruct-7b")
    trainer, data = config["trainer"], config["data"]["init_args"]
    tokens_per_step = (trainer["num_nodes"] * trainer["devices"] * trainer.get("accumulate_grad_batches", 1)
                       * data["batch_size"] * data["seq_len"])
    assert tokens_per_step == 524_288
    assert 4.9e9 < tokens_per_step * trainer["max_steps"] < 5.1e9
    assert data["rehearsal"] == {"code": 0.06, "nl": 0.02}


def test_unnatural_configs_fine_tune_the_python_variant_on_a_small_instruction_set():
    assert load("unnatural-34b")["model"]["init_checkpoint"].endswith("CodeLlama-34b-Python-hf")
    assert load("unnatural-34b")["data"]["init_args"]["datasets"][0]["limit"] == 15_000
    assert load("unnatural-small")["model"]["init_checkpoint"] == "runs/python-small/model"


@pytest.mark.parametrize("stage", ["instruct-small", "unnatural-small"])
def test_cpu_stage_runs_through_the_fit_cli_on_a_tiny_model(stage, tmp_path, corpus, tiny_checkpoint):
    """`fit --config configs/train/<stage>.yaml` with the corpus, dialogs and model swapped for test-sized ones."""
    dialogs = tmp_path / "dialogs.jsonl"
    dialogs.write_text("".join(json.dumps({"instruction": f"Name the number {i}.", "output": f"It is {i}."}) + "\n"
                               for i in range(60)))
    config = load(stage)
    config["model"].update(model_config="cl-1m", init_checkpoint=str(tiny_checkpoint))
    config["data"]["init_args"].update(datasets=[{"path": str(dialogs)}], data_dir=str(corpus.path), recipe=None,
                                       seq_len=64, batch_size=2)
    config["trainer"].update(max_steps=3, val_check_interval=3, limit_val_batches=2, enable_progress_bar=False)
    model_dir = train(config, run_dir=tmp_path / "run", resume=False)
    load_model(model_dir)
    assert "val/loss" in (tmp_path / "run" / "metrics.csv").read_text()
    resolved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["data"]
    assert resolved["class_path"] == "lit_codellama.instruct.InstructDataModule"
    assert resolved["init_args"]["rehearsal"] == load(stage)["data"]["init_args"]["rehearsal"]
