import json
import math

import pytest
import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

from lit_codellama import Llama, ModelConfig
from lit_codellama.checkpoint import config_to_hf, hf_to_ours, load_model, ours_to_hf, save_model
from lit_codellama.errors import CheckpointError, ConfigError

HF_PARAM_COUNTS = {  # from the released Hugging Face checkpoints
    "codellama-7b": 6_738_546_688,
    "codellama-13b": 13_016_028_160,
    "codellama-34b": 33_743_970_304,
    "codellama-70b": 68_976_910_336,
}


@pytest.mark.parametrize("name", sorted(HF_PARAM_COUNTS))
def test_released_presets_have_the_hf_parameter_count(name):
    with torch.device("meta"):
        model = Llama(ModelConfig.from_name(name))
    assert model.num_params() == HF_PARAM_COUNTS[name]
    assert model.config.rope_theta == 1e6 and model.config.block_size == 16384


@pytest.mark.parametrize("name, millions", [("cl-1m", 1), ("cl-10m", 10), ("cl-30m", 30), ("cl-100m", 100), ("cl-1b", 1000)])
def test_small_presets_are_about_their_nominal_size(name, millions):
    with torch.device("meta"):
        n = Llama(ModelConfig.from_name(name)).num_params()
    assert 0.7 * millions * 1e6 < n < 1.5 * millions * 1e6


def tiny_hf(n_kv_head: int, rope_theta: float, rope_scaling: float = 1.0) -> LlamaForCausalLM:
    config = ModelConfig(
        n_layer=2, n_head=4, n_kv_head=n_kv_head, n_embd=64, intermediate_size=176, vocab_size=300,
        block_size=128, rope_theta=rope_theta, rope_scaling=rope_scaling,
    )
    torch.manual_seed(0)
    hf = LlamaForCausalLM(LlamaConfig(**config_to_hf(config, torch.float32))).eval()
    with torch.no_grad():  # weights large enough that attention is sharp, so position errors would show
        for p in hf.parameters():
            if p.dim() == 2:
                p.normal_(std=0.3)
    return hf


@pytest.mark.parametrize("n_kv_head", [4, 2], ids=["mha", "gqa"])
@pytest.mark.parametrize("rope_theta", [1e4, 1e6])
def test_logits_equal_transformers(tmp_path, n_kv_head, rope_theta):
    hf = tiny_hf(n_kv_head, rope_theta)
    hf.save_pretrained(tmp_path)
    ours = load_model(tmp_path).eval()
    assert ours.config.rope_theta == rope_theta
    idx = torch.randint(0, 300, (2, 100))
    with torch.no_grad():
        expected, actual = hf(idx).logits, ours(idx)
    scale = expected.abs().max()
    assert (actual - expected).abs().max() / scale < 1e-5


def test_position_interpolation_equals_transformers_linear_rope(tmp_path):
    hf = tiny_hf(2, 1e4, rope_scaling=4.0)
    hf.save_pretrained(tmp_path)
    ours = load_model(tmp_path).eval()
    assert ours.config.rope_scaling == 4.0
    idx = torch.randint(0, 300, (1, 80))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx), hf(idx).logits, rtol=1e-5, atol=1e-4)


def test_rope_base_changes_the_logits(tmp_path):
    hf = tiny_hf(4, 1e4)
    hf.save_pretrained(tmp_path)
    ours = load_model(tmp_path).eval()
    idx = torch.randint(0, 300, (1, 64))
    with torch.no_grad():
        before = ours(idx)
        ours.set_rope(rope_theta=1e6)
        after = ours(idx)
    assert ours.config.rope_theta == 1e6
    assert not torch.allclose(before, after, atol=1e-3)


def test_hf_to_ours_to_hf_is_bit_identical():
    hf = tiny_hf(2, 1e6)
    config = ModelConfig(n_layer=2, n_head=4, n_kv_head=2, n_embd=64, intermediate_size=176, vocab_size=300)
    original = {k: v.clone() for k, v in hf.state_dict().items()}
    back = ours_to_hf(hf_to_ours(dict(original), config), config)
    assert back.keys() == original.keys()
    for name, tensor in original.items():
        assert torch.equal(back[name], tensor), name


def test_saved_hf_directory_opens_in_transformers_with_the_same_logits(tmp_path):
    ours = Llama(ModelConfig.from_name("cl-1m", vocab_size=256, rope_theta=1e6)).eval()
    save_model(ours, tmp_path, hf_format=True)
    hf = LlamaForCausalLM.from_pretrained(tmp_path).eval()
    idx = torch.randint(0, 256, (2, 40))
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, ours(idx), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "rope_fields",
    [{"rope_theta": 1e6, "rope_scaling": None}, {"rope_parameters": {"rope_type": "default", "rope_theta": 1e6}}],
    ids=["released-codellama-toplevel", "transformers5-rope-parameters"],
)
def test_both_config_json_spellings_of_rope_theta_load(tmp_path, rope_fields):
    hf = tiny_hf(4, 1e6)
    hf.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    for key in ("rope_theta", "rope_scaling", "rope_parameters"):
        cfg.pop(key, None)
    (tmp_path / "config.json").write_text(json.dumps({**cfg, **rope_fields}))
    assert load_model(tmp_path).config.rope_theta == 1e6


def test_sharded_safetensors_checkpoint_loads(tmp_path):
    hf = tiny_hf(2, 1e6)
    state = hf.state_dict()
    names = sorted(state)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2], "model-00002-of-00002.safetensors": names[len(names) // 2 :]}
    for file, keys in shards.items():
        save_file({k: state[k].contiguous() for k in keys}, tmp_path / file)
    weight_map = {k: file for file, keys in shards.items() for k in keys}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    hf.config.to_json_file(tmp_path / "config.json")
    ours = load_model(tmp_path)
    torch.testing.assert_close(ours.tok_embeddings.weight, state["model.embed_tokens.weight"])


def test_our_format_round_trips(tmp_path):
    model = Llama(ModelConfig.from_name("cl-1m", vocab_size=256))
    save_model(model, tmp_path)
    loaded = load_model(tmp_path)
    assert loaded.config == model.config
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(CheckpointError, match="does-not-exist"):
        load_model(tmp_path / "does-not-exist")


def test_checkpoint_of_another_shape_names_the_tensor(tmp_path):
    save_model(Llama(ModelConfig.from_name("cl-1m", vocab_size=256)), tmp_path)
    ModelConfig.from_name("cl-1m", vocab_size=512).save(tmp_path / "model_config.yaml")
    with pytest.raises(CheckpointError, match=r"tok_embeddings\.weight has shape \(256, 96\)"):
        load_model(tmp_path)


def test_unknown_config_field_lists_the_valid_ones(tmp_path):
    path = tmp_path / "model.yaml"
    path.write_text("n_layer: 2\nn_heads: 4\n")
    with pytest.raises(ConfigError, match=r"model\.yaml: unknown model config field\(s\) \['n_heads'\].*n_head"):
        ModelConfig.from_file(path)


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ConfigError, match="cl-10m"):
        ModelConfig.from_name("codellama-8b")


def test_inconsistent_config_is_rejected():
    with pytest.raises(ConfigError, match="n_head must be divisible by n_kv_head"):
        ModelConfig(n_head=6, n_kv_head=4, n_embd=96)


def test_kv_cache_decoding_equals_full_recomputation():
    torch.manual_seed(0)
    model = Llama(ModelConfig.from_name("cl-1m", vocab_size=256)).eval()
    idx = torch.randint(0, 256, (2, 24))
    with torch.no_grad():
        full = model(idx)
        model.setup_kv_cache(batch_size=2, max_seq_len=32)
        prefill = model(idx[:, :16], input_pos=torch.arange(16))
        steps = [model(idx[:, t : t + 1], input_pos=torch.tensor([t])) for t in range(16, 24)]
    cached = torch.cat([prefill, *steps], dim=1)
    torch.testing.assert_close(cached, full, rtol=1e-4, atol=1e-5)


def test_bf16_rope_rotates_in_float32_at_long_positions():
    # Reference: the same bf16 inputs rotated in float64, rounded once to bf16. Rounding cos/sin to bf16 first (the
    # old path) matches it in only ~63% of elements at positions near 16k; a float32 rotation in ~98%.
    from lit_codellama.model import apply_rope, rope_cos_sin

    torch.manual_seed(0)
    head_size, positions = 64, torch.arange(16000, 16384)
    x = torch.randn(1, 4, len(positions), head_size).to(torch.bfloat16)
    cos, sin = rope_cos_sin(positions, head_size, theta=1e6, scaling=1.0)
    assert cos.dtype == sin.dtype == torch.float32
    rotated = apply_rope(x, cos, sin)
    angles = positions.double()[:, None] / 1e6 ** (torch.arange(0, head_size, 2, dtype=torch.float64) / head_size)
    x1, x2 = x.double().chunk(2, dim=-1)
    reference = torch.cat((x1 * angles.cos() - x2 * angles.sin(), x2 * angles.cos() + x1 * angles.sin()), dim=-1)
    assert rotated.dtype == torch.bfloat16
    assert (rotated == reference.to(torch.bfloat16)).float().mean() > 0.95


def test_model_runs_beyond_its_training_context():
    model = Llama(ModelConfig.from_name("cl-1m", vocab_size=256, block_size=32)).eval()
    with torch.no_grad():
        assert model(torch.randint(0, 256, (1, 100))).shape == (1, 100, 256)


def test_convert_cli_writes_a_directory_transformers_opens(tmp_path, tokenizer):
    from lit_codellama.cli import main

    model = Llama(ModelConfig.from_name("cl-1m", vocab_size=tokenizer.vocab_size)).eval()
    save_model(model, tmp_path / "ours")
    (tmp_path / "ours" / "tokenizer.model").write_bytes(tokenizer.path.read_bytes())
    assert main(["convert", str(tmp_path / "ours"), str(tmp_path / "hf"), "--to", "hf"]) == 0
    hf = LlamaForCausalLM.from_pretrained(tmp_path / "hf").eval()
    idx = torch.randint(0, tokenizer.vocab_size, (1, 20))
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, model(idx), rtol=1e-5, atol=1e-5)


def test_init_is_normal_002_with_residual_projections_scaled_and_norms_at_one():
    model = Llama(ModelConfig.from_name("cl-1m", vocab_size=256))
    torch.manual_seed(0)
    model.init_weights()
    torch.manual_seed(0)
    expected = {}
    residual_std = 0.02 / math.sqrt(2 * model.config.n_layer)
    for name, param in model.named_parameters():  # the rule, by name, in registration order
        if name.endswith("norm.weight"):
            expected[name] = torch.ones_like(param)
        else:
            std = residual_std if name.endswith(("wo.weight", "w2.weight")) else 0.02
            expected[name] = torch.empty_like(param).normal_(std=std)
    for name, param in model.named_parameters():
        assert torch.equal(param, expected[name]), name
