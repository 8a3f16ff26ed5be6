"""Real DeepSpeed ZeRO-3 on two CPU processes (gloo), against plain one-process training of the same batches."""

import json
import math
import shutil

import pytest
import torch
from conftest import run_cli, tiny_config
from lightning.pytorch.utilities.deepspeed import (
    convert_zero_checkpoint_to_fp32_state_dict,
)
from probes import RecordLosses

from lit_codellama.checkpoint import load_model, save_model
from lit_codellama.config import ModelConfig
from lit_codellama.model import Llama
from lit_codellama.training import train

STEPS = 4
# fp32 on both sides; only the order of the gradient reductions differs (and Adam's eps=1e-5 damps tiny gradients).
TOLERANCE = {"atol": 2e-5, "rtol": 1e-4}


def zero3_config(corpus_dir, run_dir, init_checkpoint, losses):
    config = tiny_config(corpus_dir, run_dir, max_steps=STEPS, every=2)
    config["trainer"].update(
        devices=2, strategy={"class_path": "lit_codellama.training.strategies.CPUDeepSpeedStrategy",
                             "init_args": {"stage": 3}},
        callbacks=[{"class_path": "probes.RecordLosses", "init_args": {"path": str(losses)}},
                   {"class_path": "probes.RecordShards", "init_args": {"out_dir": str(run_dir)}}],
    )
    config["model"]["init_checkpoint"] = str(init_checkpoint)
    config["data"] = {"class_path": "probes.SplitBatches", "init_args": {**config["data"], "fim_rate": 0.0}}
    return config


@pytest.mark.slow
def test_zero3_on_two_processes_shards_parameters_and_trains_like_one_process(corpus_dir, tmp_path):
    # Both runs start from the same weights, which the ZeRO-3 run loads into partitioned parameters.
    init = tmp_path / "init"
    torch.manual_seed(0)
    save_model(Llama(ModelConfig.from_name("cl-1m", vocab_size=512)), init)
    shutil.copyfile(corpus_dir / "tokenizer.model", init / "tokenizer.model")

    zero3_dir = tmp_path / "zero3"
    result = run_cli(zero3_config(corpus_dir, zero3_dir, init, tmp_path / "zero3-losses.json"))
    assert result.returncode == 0, result.stderr[-4000:]

    single = zero3_config(corpus_dir, tmp_path / "single", init, tmp_path / "single-losses.json")
    del single["trainer"]["strategy"]
    single["trainer"].update(devices=1, callbacks=[])
    train(single, callbacks=[RecordLosses(tmp_path / "single-losses.json")])

    # Each rank holds half of every parameter (rounded up: DeepSpeed pads the partitions).
    for rank in (0, 1):
        shards = json.loads((zero3_dir / f"shards-rank{rank}.json").read_text())
        assert set(shards) == set(Llama(ModelConfig.from_name("cl-1m", vocab_size=512)).state_dict())
        assert all(held == math.ceil(total / 2) for held, total in shards.values()), shards

    losses = [json.loads((tmp_path / f"{run}-losses.json").read_text()) for run in ("zero3", "single")]
    assert len(losses[0]) == STEPS
    torch.testing.assert_close(torch.tensor(losses[0]), torch.tensor(losses[1]), **TOLERANCE)

    # The sharded checkpoint consolidates into one file that load_model reads; the exported model is it.
    assert (zero3_dir / "checkpoints/last.ckpt").is_dir()
    convert_zero_checkpoint_to_fp32_state_dict(zero3_dir / "checkpoints/last.ckpt", tmp_path / "consolidated.ckpt")
    consolidated = load_model(tmp_path / "consolidated.ckpt").state_dict()
    exported = load_model(zero3_dir / "model").state_dict()
    reference = load_model(tmp_path / "single/model").state_dict()
    for name, tensor in consolidated.items():
        assert torch.equal(tensor, exported[name]), name
        torch.testing.assert_close(tensor, reference[name], **TOLERANCE, msg=name)
