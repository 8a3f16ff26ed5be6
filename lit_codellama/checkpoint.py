"""Reading and writing model weights: Hugging Face Llama/CodeLlama directories, our own format, Lightning checkpoints,
DeepSpeed checkpoint directories. `load_model` / `save_model` are the one way to read and write them;
`load_for_inference` is the one way to get a model and its tokenizer ready to generate or score.

Our format is a directory with `model_config.yaml` and `model.safetensors`. Hugging Face names map to
ours by one small table; q/k/v are concatenated into our fused projection.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml
from huggingface_hub import save_torch_state_dict
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from lit_codellama.config import ModelConfig
from lit_codellama.errors import CheckpointError
from lit_codellama.files import atomic_path, write_text_atomic
from lit_codellama.model import Llama
from lit_codellama.tokenizer import Tokenizer

OUR_CONFIG, OUR_WEIGHTS = "model_config.yaml", "model.safetensors"

# Hugging Face name -> our name, per layer ({i}) and global.
_HF_TO_OURS = {
    "model.embed_tokens.weight": "tok_embeddings.weight",
    "model.norm.weight": "norm.weight",
    "lm_head.weight": "output.weight",
    "model.layers.{i}.input_layernorm.weight": "layers.{i}.attention_norm.weight",
    "model.layers.{i}.self_attn.o_proj.weight": "layers.{i}.attention.wo.weight",
    "model.layers.{i}.post_attention_layernorm.weight": "layers.{i}.ffn_norm.weight",
    "model.layers.{i}.mlp.gate_proj.weight": "layers.{i}.feed_forward.w1.weight",
    "model.layers.{i}.mlp.up_proj.weight": "layers.{i}.feed_forward.w3.weight",
    "model.layers.{i}.mlp.down_proj.weight": "layers.{i}.feed_forward.w2.weight",
}
# Our fused attention input projection: Hugging Face's q_proj, k_proj and v_proj concatenated along dim 0.
_QKV = "layers.{i}.attention.qkv.weight"


def _hf_qkv_names(i: int) -> list[str]:
    return [f"model.layers.{i}.self_attn.{p}_proj.weight" for p in "qkv"]


# ---------------------------------------------------------------------------------------------- config

_HF_REQUIRED = ("hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers", "vocab_size")


def _read_hf_config(file: Path) -> dict[str, Any]:
    try:
        return json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{file} is not valid JSON ({error}); download or export it again") from None


def config_from_hf(hf: dict[str, Any], source: Path) -> ModelConfig:
    """Our config from a Hugging Face `config.json`, reading RoPE's base wherever the file keeps it.

    Released CodeLlama configs put `rope_theta` at the top level; current transformers writes
    `rope_parameters: {rope_theta: ...}`. Falling back to 1e4 when both are absent is only right for
    Llama 2 — a wrong base is a silent failure, so we never guess beyond that documented default.
    """
    if not isinstance(hf, dict):
        raise CheckpointError(f"{source}: expected a JSON object of config fields, got a {type(hf).__name__}")
    missing = [name for name in _HF_REQUIRED if name not in hf]
    if missing:
        raise CheckpointError(f"{source}: lacks the field(s) {missing}; a Llama config.json has {list(_HF_REQUIRED)}")
    for name in (*_HF_REQUIRED, "num_key_value_heads", "max_position_embeddings"):
        value = hf.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise CheckpointError(f"{source}: {name} must be an integer >= 1, got {value!r}")
    if hf.get("model_type", "llama") != "llama":
        raise CheckpointError(f"{source}: model_type is {hf['model_type']!r}; only Llama/CodeLlama checkpoints load")
    if hf.get("hidden_act", "silu") != "silu" or hf.get("attention_bias") or hf.get("mlp_bias"):
        raise CheckpointError(f"{source}: hidden_act/attention_bias/mlp_bias differ from Llama 2's; cannot load")
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    if not isinstance(rope, dict):
        raise CheckpointError(f"{source}: rope_parameters/rope_scaling must be an object, got {rope!r}")
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in ("default", "linear"):
        raise CheckpointError(f"{source}: rope type {rope_type!r} is not supported (only default and linear)")
    n_head = hf["num_attention_heads"]
    if "head_dim" in hf and hf["head_dim"] not in (None, hf["hidden_size"] // n_head):
        raise CheckpointError(f"{source}: head_dim={hf['head_dim']} differs from hidden_size/num_attention_heads")
    try:
        return ModelConfig(
            name=hf.get("_name_or_path") or source.parent.name,
            block_size=hf.get("max_position_embeddings", 4096),
            vocab_size=hf["vocab_size"],
            n_layer=hf["num_hidden_layers"],
            n_head=n_head,
            n_kv_head=hf.get("num_key_value_heads") or n_head,
            n_embd=hf["hidden_size"],
            intermediate_size=hf["intermediate_size"],
            rope_theta=float(rope.get("rope_theta", hf.get("rope_theta", 10_000.0))),
            rope_scaling=float(rope.get("factor", 1.0)) if rope_type == "linear" else 1.0,
            norm_eps=hf.get("rms_norm_eps", 1e-5),
        )
    except (TypeError, ValueError) as error:  # e.g. a RoPE base given as text: name the file
        raise CheckpointError(f"{source}: {error}") from None


def config_to_hf(config: ModelConfig, dtype: torch.dtype) -> dict[str, Any]:
    rope_parameters: dict[str, Any] = {"rope_type": "default", "rope_theta": config.rope_theta}
    if config.rope_scaling != 1.0:
        rope_parameters.update(rope_type="linear", factor=config.rope_scaling)
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_act": "silu",
        "hidden_size": config.n_embd,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.n_layer,
        "num_attention_heads": config.n_head,
        "num_key_value_heads": config.n_kv_head,
        "vocab_size": config.vocab_size,
        "max_position_embeddings": config.block_size,
        "rms_norm_eps": config.norm_eps,
        # Both spellings, so that transformers 4.x (top-level rope_theta) and 5.x (rope_parameters) read 1e6 right.
        "rope_theta": config.rope_theta,
        "rope_scaling": None if config.rope_scaling == 1.0 else {"type": "linear", "factor": config.rope_scaling},
        "rope_parameters": rope_parameters,
        "tie_word_embeddings": False,
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": str(dtype).removeprefix("torch."),
    }


# ---------------------------------------------------------------------------------------------- weights


def hf_to_ours(hf_state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    state = {}
    for i in range(config.n_layer):
        for hf_name, ours in _HF_TO_OURS.items():
            if "{i}" in hf_name:
                state[ours.format(i=i)] = hf_state.pop(hf_name.format(i=i))
        state[_QKV.format(i=i)] = torch.cat([hf_state.pop(name) for name in _hf_qkv_names(i)], dim=0)
    state["tok_embeddings.weight"] = hf_state.pop("model.embed_tokens.weight")
    state["norm.weight"] = hf_state.pop("model.norm.weight")
    # Tied checkpoints (not Code Llama's) have no lm_head: the output layer reuses the embedding.
    state["output.weight"] = hf_state.pop("lm_head.weight", state["tok_embeddings.weight"])
    return state


def _check_hf_names(hf_state: dict[str, torch.Tensor], config: ModelConfig, source: Path) -> None:
    per_layer = [name for name in _HF_TO_OURS if "{i}" in name]
    expected = ["model.embed_tokens.weight", "model.norm.weight"] + [
        name for i in range(config.n_layer) for name in [*(n.format(i=i) for n in per_layer), *_hf_qkv_names(i)]
    ]
    missing = [name for name in expected if name not in hf_state]
    if missing:
        raise CheckpointError(
            f"{source}: num_hidden_layers={config.n_layer}, but the weights lack {len(missing)} tensor(s) it implies "
            f"(first: {missing[0]}); the config does not belong to these weights"
        )


def ours_to_hf(state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    c = config
    qkv_sizes = (c.n_head * c.head_size, c.n_kv_head * c.head_size, c.n_kv_head * c.head_size)
    hf = {hf_name: state[ours] for hf_name, ours in _HF_TO_OURS.items() if "{i}" not in hf_name}
    for i in range(c.n_layer):
        for hf_name, ours in _HF_TO_OURS.items():
            if "{i}" in hf_name:
                hf[hf_name.format(i=i)] = state[ours.format(i=i)]
        pieces = state[_QKV.format(i=i)].split(qkv_sizes, dim=0)
        # Copies: views would share the fused tensor's storage, which safetensors' sharded writer refuses.
        hf.update({name: piece.clone() for name, piece in zip(_hf_qkv_names(i), pieces)})
    return hf


def check_safetensors(file: Path) -> None:
    """Raise unless `file` is a complete safetensors file: its header parses and covers the whole file."""
    try:
        with safe_open(file, framework="pt"):
            pass
    except (SafetensorError, OSError) as error:
        raise CheckpointError(
            f"{file} is not a readable safetensors file ({error}); it is truncated or corrupt: export or download "
            "it again"
        ) from None


def _read_safetensors(files: list[Path]) -> dict[str, torch.Tensor]:
    state = {}
    for file in files:
        check_safetensors(file)
        with safe_open(file, framework="pt") as f:
            state.update({name: f.get_tensor(name) for name in f.keys()})
    return state


def _hf_weight_files(directory: Path) -> list[Path]:
    for index_name, single in (("model.safetensors.index.json", "model.safetensors"), ("pytorch_model.bin.index.json", "pytorch_model.bin")):
        index = directory / index_name
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            missing = [s for s in shards if not (directory / s).is_file()]
            if missing:
                raise CheckpointError(f"{index} lists shard(s) {missing} that are not in {directory}; download them")
            return [directory / s for s in shards]
        if (directory / single).is_file():
            return [directory / single]
    raise CheckpointError(f"{directory} has config.json but no model.safetensors(.index.json) or pytorch_model.bin")


def _read_hf_weights(directory: Path) -> dict[str, torch.Tensor]:
    files = _hf_weight_files(directory)
    if files[0].suffix == ".safetensors":
        return _read_safetensors(files)
    state = {}
    for file in files:
        state.update(_torch_load(file, weights_only=True))
    return state


_WRAPPER_PREFIX = re.compile(r"^(?:_forward_module\.|module\.)*model\.")


def _torch_load(file: Path, weights_only: bool) -> Any:
    try:
        return torch.load(file, map_location="cpu", weights_only=weights_only)
    except Exception as error:  # torch.load fails in many ways (EOFError, RuntimeError, UnpicklingError...)
        reason = next(iter(str(error).splitlines()), "")
        raise CheckpointError(
            f"{file} is not a readable torch checkpoint ({type(error).__name__}: {reason}); it is truncated or "
            "corrupt: pass another one (e.g. the run's last.ckpt or model/ directory) or download it again"
        ) from None


def _read_lightning_checkpoint(file: Path) -> tuple[dict[str, torch.Tensor], ModelConfig]:
    # Lightning checkpoints hold more than tensors (loops, callbacks); they are the user's own files.
    ckpt = _torch_load(file, weights_only=False)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(f"{file}: not a Lightning checkpoint (no state_dict); pass one written by `fit`")
    config = (ckpt.get("hyper_parameters") or {}).get("model_config")
    if config is None:
        raise CheckpointError(f"{file}: no hyper_parameters['model_config']; was it written by lit_codellama's trainer?")
    if isinstance(config, dict):
        config = ModelConfig.from_dict(config, source=f"{file} hyper_parameters.model_config")
    state = {_WRAPPER_PREFIX.sub("", k): v for k, v in ckpt["state_dict"].items() if _WRAPPER_PREFIX.match(k)}
    return state, config


def _consolidate_deepspeed(directory: Path) -> tuple[dict[str, torch.Tensor], ModelConfig]:
    from lightning.pytorch.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict

    with tempfile.TemporaryDirectory() as tmp:
        consolidated = Path(tmp) / "consolidated.ckpt"
        convert_zero_checkpoint_to_fp32_state_dict(str(directory), str(consolidated))
        return _read_lightning_checkpoint(consolidated)


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], ModelConfig]:
    """(state dict in our names, config) from any supported checkpoint."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_file():
        return _read_lightning_checkpoint(path)
    if (path / OUR_CONFIG).is_file():
        if not (path / OUR_WEIGHTS).is_file():
            raise CheckpointError(f"{path} has {OUR_CONFIG} but no {OUR_WEIGHTS}")
        return _read_safetensors([path / OUR_WEIGHTS]), ModelConfig.from_file(path / OUR_CONFIG)
    if (path / "config.json").is_file():
        config = config_from_hf(_read_hf_config(path / "config.json"), path / "config.json")
        hf_state = _read_hf_weights(path)
        _check_hf_names(hf_state, config, path / "config.json")
        return hf_to_ours(hf_state, config), config
    if (path / "latest").is_file() or (path / "checkpoint").is_dir():
        return _consolidate_deepspeed(path)
    raise CheckpointError(
        f"{path} is not a checkpoint: expected config.json (Hugging Face), {OUR_CONFIG} (lit_codellama), "
        "a DeepSpeed checkpoint directory, or a Lightning .ckpt file"
    )


def check_state_dict(state: dict[str, torch.Tensor], model: torch.nn.Module, source: Path | str) -> None:
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{source}: missing tensors {missing[:5]}, unexpected tensors {unexpected[:5]}")
    for name, shape in expected.items():
        if tuple(state[name].shape) != shape:
            raise CheckpointError(
                f"{source}: tensor {name} has shape {tuple(state[name].shape)} but the model expects {shape}; "
                "the checkpoint was trained with a different model config"
            )


def load_model(path: str | Path, dtype: torch.dtype | None = None, **config_overrides: Any) -> Llama:
    state, config = read_checkpoint(path)
    if config_overrides:
        config = ModelConfig.from_dict({**config.to_dict(), **config_overrides}, source=f"overrides for {path}")
    with torch.device("meta"):
        model = Llama(config)
    check_state_dict(state, model, path)
    if dtype is not None:
        state = {k: v.to(dtype) for k, v in state.items()}
    model.load_state_dict(state, assign=True)
    return model


def inference_dtype(device: torch.device) -> torch.dtype:
    """The dtype every inference entry point runs in: float32 on CPU (where bfloat16 matmuls are slow and lossy),
    bfloat16 on GPUs that support it (the released checkpoints' own dtype), else float16."""
    if device.type == "cpu":
        return torch.float32
    return torch.bfloat16 if device.type != "cuda" or torch.cuda.is_bf16_supported() else torch.float16


def find_tokenizer(checkpoint: Path) -> Path:
    """The `tokenizer.model` of a checkpoint: beside it, or in the run directory it belongs to (a run's
    `checkpoints/step=N.ckpt` is tokenized by the run's `model/tokenizer.model`)."""
    start = checkpoint if checkpoint.is_dir() else checkpoint.parent
    for directory in (start, *start.parents)[:4]:
        for candidate in (directory / "tokenizer.model", directory / "model" / "tokenizer.model"):
            if candidate.is_file():
                return candidate
    corpus = _corpus_tokenizer(start)
    if corpus is not None and corpus.is_file():
        return corpus
    raise CheckpointError(f"no tokenizer.model found beside {checkpoint} or in its run directory; pass --tokenizer PATH")


def _corpus_tokenizer(start: Path) -> Path | None:
    """The tokenizer of the corpus that the run's config.yaml names: a run interrupted before its final export has no
    model/ directory."""
    config = next((d / "config.yaml" for d in (start, *start.parents)[:3] if (d / "config.yaml").is_file()), None)
    if config is None:
        return None
    data = (yaml.safe_load(config.read_text()) or {}).get("data") or {}
    data_dir = (data.get("init_args") or data).get("data_dir")
    return Path(data_dir) / "tokenizer.model" if data_dir else None


def load_for_inference(
    checkpoint: str | Path,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    rope_theta: float | None = None,
    rope_scaling: float | None = None,
    tokenizer: str | Path | None = None,
) -> tuple[Llama, Tokenizer]:
    """(model in eval mode, tokenizer) for anything `load_model` reads: what the eval, generate and self-instruct
    commands and the studies run, so that one checkpoint scores the same everywhere.

    device: default cuda when available, else cpu. dtype: default `inference_dtype(device)`. rope_theta,
    rope_scaling: RoPE at inference (e.g. a larger base for longer contexts); None keeps the checkpoint's.
    tokenizer: default `find_tokenizer(checkpoint)`.
    """
    checkpoint = Path(checkpoint)
    tok = Tokenizer(tokenizer or find_tokenizer(checkpoint))  # before the weights: a missing file fails fast
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    rope = {k: v for k, v in (("rope_theta", rope_theta), ("rope_scaling", rope_scaling)) if v is not None}
    model = load_model(checkpoint, dtype=dtype or inference_dtype(device), **rope)
    return model.to(device).eval(), tok


def save_model(model: Llama, path: str | Path, hf_format: bool = False, max_shard_size: int | str = "5GB") -> None:
    """Write `model` to directory `path`: our format, or Hugging Face's weights and config.json (opens with
    transformers), as model.safetensors or, above `max_shard_size`, shards listed in model.safetensors.index.json.

    Our format is written atomically, file by file, the weights last, so an interrupted save never leaves weights
    that look complete."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if hf_format:
        dtype = model.output.weight.dtype
        write_text_atomic(path / "config.json", json.dumps(config_to_hf(model.config, dtype), indent=2))
        hf_state = ours_to_hf(state, model.config)
        save_torch_state_dict(hf_state, path, max_shard_size=max_shard_size, metadata={"format": "pt"})
    else:
        model.config.save(path / OUR_CONFIG)
        with atomic_path(path / OUR_WEIGHTS) as tmp:
            save_file(state, tmp, metadata={"format": "pt"})
