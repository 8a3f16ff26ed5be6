"""`load_for_inference`: the one way the eval, generate and self-instruct commands and the studies load a model."""

import shutil

import pytest
import torch

from lit_codellama import Llama, ModelConfig
from lit_codellama.checkpoint import load_for_inference, save_model
from lit_codellama.errors import CheckpointError


@pytest.fixture
def run_dir(tmp_path, tokenizer_path):
    """A training run's layout: Lightning checkpoints under checkpoints/, the tokenizer in model/."""
    torch.manual_seed(0)
    model = Llama(ModelConfig.from_name("cl-1m", vocab_size=1024))
    (tmp_path / "checkpoints").mkdir()
    state = {f"model.{name}": tensor for name, tensor in model.state_dict().items()}
    torch.save({"hyper_parameters": {"model_config": model.config.to_dict()}, "state_dict": state},
               tmp_path / "checkpoints" / "step=1.ckpt")
    save_model(model, tmp_path / "model")
    shutil.copy(tokenizer_path, tmp_path / "model" / "tokenizer.model")
    return tmp_path


def test_a_runs_checkpoint_loads_with_the_runs_tokenizer_in_float32_on_cpu(run_dir):
    model, tok = load_for_inference(run_dir / "checkpoints" / "step=1.ckpt", "cpu")
    assert tok.path == run_dir / "model" / "tokenizer.model"
    assert model.output.weight.dtype == torch.float32 and model.output.weight.device.type == "cpu"
    assert not model.training
    reference, _ = load_for_inference(run_dir / "model", "cpu")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))


def test_rope_and_dtype_settings_apply_to_the_loaded_model(run_dir):
    model, _ = load_for_inference(run_dir / "model", "cpu", torch.bfloat16, rope_theta=1e6, rope_scaling=4.0)
    assert (model.config.rope_theta, model.config.rope_scaling) == (1e6, 4.0)
    assert model.output.weight.dtype == torch.bfloat16
    unchanged, _ = load_for_inference(run_dir / "model", "cpu")
    assert (unchanged.config.rope_theta, unchanged.config.rope_scaling) == (1e4, 1.0)


def test_a_checkpoint_without_a_tokenizer_names_the_fix(tmp_path):
    save_model(Llama(ModelConfig.from_name("cl-1m", vocab_size=256)), tmp_path / "bare")
    with pytest.raises(CheckpointError, match=r"no tokenizer.model found beside .*bare.*pass --tokenizer"):
        load_for_inference(tmp_path / "bare", "cpu")
