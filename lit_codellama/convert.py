"""`python -m lit_codellama convert SRC OUT [--to hf]`: any checkpoint this project reads, written in our format or
as a Hugging Face directory that `AutoTokenizer` and `AutoModelForCausalLM` open as they are.

A Hugging Face export holds:

    config.json, generation_config.json     the architecture; BOS/EOS ids, greedy decoding by default
    model.safetensors                       or, above --max-shard-size, model-0000i-of-0000n.safetensors and
                                            model.safetensors.index.json
    tokenizer.model                         the sentencepiece model itself
    tokenizer.json, tokenizer_config.json,  the same tokenizer for transformers: BOS added, no EOS, the four
    special_tokens_map.json                 infilling pieces as special tokens
    README.md                               a model card written from the run directory the checkpoint came from

tokenizer.json reproduces sentencepiece exactly: a BPE over the model's pieces whose merges follow the pieces'
scores, with sentencepiece's normalization (prepend "▁", spaces to "▁"). Its class is PreTrainedTokenizerFast, which
uses the file as written. LlamaTokenizer and CodeLlamaTokenizer would rebuild it (transformers 5) with a Metaspace
pre-tokenizer that prepends no "▁" to a text that starts with a space, so "  x" would not encode as ours does.
Special tokens are transformers' usual ones (as in Meta's CodeLlama-*-hf files): `decode` writes the infilling pieces
as text ("<EOT>", like ours) unless `skip_special_tokens`. A text that spells a special token differs: "<s>" in a text
is BOS for transformers and plain characters for sentencepiece, " <PRE>" the reverse.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
import yaml
from tokenizers import AddedToken, decoders, models, normalizers, processors
from tokenizers import Tokenizer as FastTokenizer

from lit_codellama.chat import HF_CHAT_TEMPLATE
from lit_codellama.checkpoint import find_tokenizer, load_model, save_model
from lit_codellama.errors import CheckpointError
from lit_codellama.model import Llama
from lit_codellama.tokenizer import EOT, INFILL_MARKER, MIDDLE, PREFIX, SUFFIX, Tokenizer

SPECIAL = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"}
INFILLING = (PREFIX, MIDDLE, SUFFIX, EOT)


# ---------------------------------------------------------------------------------------------- tokenizer


def fast_tokenizer(tok: Tokenizer) -> FastTokenizer:
    """`tok` as a `tokenizers` BPE that gives the same ids for every text (BOS added by its post-processor)."""
    sp = tok.processor
    vocab = {sp.id_to_piece(i): i for i in range(tok.vocab_size)}
    infilling = list(INFILLING) if tok.has_infilling else []
    whole = {*infilling, INFILL_MARKER}  # user-defined pieces: sentencepiece never builds them from smaller ones
    merged = [
        i for i in range(tok.vocab_size)
        if not (sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i) or sp.is_unused(i)) and sp.id_to_piece(i) not in whole
    ]
    merges = []
    # sentencepiece's BPE merges the adjacent pair whose union has the highest score; a BPE merge list ranks pairs.
    for i in sorted(merged, key=lambda i: -sp.get_score(i)):
        piece = sp.id_to_piece(i)
        splits = [(piece[:k], piece[k:]) for k in range(1, len(piece)) if piece[:k] in vocab and piece[k:] in vocab]
        merges += sorted(splits, key=lambda pair: (vocab[pair[0]], vocab[pair[1]]))
    fast = FastTokenizer(models.BPE(vocab, merges, unk_token=SPECIAL["unk_token"], fuse_unk=True, byte_fallback=True))
    fast.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    fast.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    bos = SPECIAL["bos_token"]
    fast.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.bos_id)]
    )
    fast.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in [*SPECIAL.values(), *infilling]])
    return fast


def write_tokenizer(tok: Tokenizer, out: Path, max_length: int) -> None:
    """tokenizer.model, tokenizer.json, tokenizer_config.json and special_tokens_map.json in `out`."""
    (out / "tokenizer.model").write_bytes(tok.path.read_bytes())
    fast = fast_tokenizer(tok)
    fast.save(str(out / "tokenizer.json"))
    extra = list(INFILLING) if tok.has_infilling else []
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **SPECIAL,
        "add_bos_token": True,
        "add_eos_token": False,
        "additional_special_tokens": extra,  # transformers 4's name
        "extra_special_tokens": extra,  # transformers 5's
        "added_tokens_decoder": {
            str(i): {"content": t.content, "special": True, "normalized": t.normalized, "lstrip": False,
                     "rstrip": False, "single_word": False}
            for i, t in sorted(fast.get_added_tokens_decoder().items())
        },
        "clean_up_tokenization_spaces": False,
        "model_max_length": max_length,
        "padding_side": "left",  # as our batched generation pads
        "chat_template": HF_CHAT_TEMPLATE,  # Llama 2's, for Instruct models
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    special_map = {**SPECIAL, "additional_special_tokens": extra}
    (out / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------------------------- export


def export_hf(model: Llama, tok: Tokenizer, out: Path, source: Path | None = None, max_shard_size: int | str = "5GB") -> None:
    """A Hugging Face directory: weights, tokenizer, generation config and a model card (from `source`'s run)."""
    check_vocabulary(model, tok)
    save_model(model, out, hf_format=True, max_shard_size=max_shard_size)
    write_tokenizer(tok, out, model.config.block_size)
    generation = {"bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id, "pad_token_id": tok.pad_id, "do_sample": False}
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    (out / "README.md").write_text(model_card(model, tok, source))


def check_vocabulary(model: Llama, tok: Tokenizer) -> None:
    if tok.vocab_size != model.config.vocab_size:
        raise CheckpointError(
            f"tokenizer {tok.path} has {tok.vocab_size} pieces but the model's vocab_size is {model.config.vocab_size}; "
            "pass --tokenizer with the sentencepiece model the checkpoint was trained with"
        )


# ---------------------------------------------------------------------------------------------- model card


def model_card(model: Llama, tok: Tokenizer, source: Path | None) -> str:
    """Markdown: what the model is, the training stages that made it, their data and evaluation results, as far as
    the run directories record them."""
    c = model.config
    lines = [
        "---", "library_name: transformers", "pipeline_tag: text-generation", "tags: [code, llama, lit_codellama]", "---",
        f"# {c.name or 'lit_codellama model'}", "",
        "A Llama 2 decoder trained with lit_codellama, a reproduction of Code Llama's recipe (Rozière et al. 2023, "
        "arXiv 2308.12950). Load it with `AutoTokenizer` and `AutoModelForCausalLM`.", "",
        "| field | value |", "|---|---|",
        f"| parameters | {model.num_params():,} |",
        f"| layers / heads / KV heads / width | {c.n_layer} / {c.n_head} / {c.n_kv_head} / {c.n_embd} |",
        f"| vocabulary | {c.vocab_size} (`tokenizer.model`; infilling pieces: {'yes' if tok.has_infilling else 'no'}) |",
        f"| context (trained) | {c.block_size} tokens |",
        f"| RoPE base θ / linear scaling | {c.rope_theta:g} / {c.rope_scaling:g} |",
        f"| weights dtype | {str(model.output.weight.dtype).removeprefix('torch.')} |", "",
    ]
    stages = _stages(source)
    lines += ["## Training", ""]
    if not stages:
        lines += ["No run directory (config.yaml) was found beside the converted checkpoint: the training is unknown.", ""]
    for n, run in enumerate(stages, 1):
        lines += _stage_section(n, run)
    if tok.has_infilling:
        lines += [
            "## Infilling", "",
            "Prompt as Meta's `infilling_prompt_tokens` does: the suffix is encoded without sentencepiece's implicit "
            "leading space (`tokenizer.encode(\"☺\" + suffix, add_special_tokens=False)` minus the ids of \"☺\"), "
            "and generation stops at `▁<EOT>`. See lit_codellama's README, \"Infilling with transformers\".", "",
        ]
    return "\n".join(lines)


def run_directory(checkpoint: Path) -> Path | None:
    """The training run a checkpoint belongs to: the nearest directory at or above it (two levels up at most) that
    holds the run's `config.yaml` (training/cli.py's layout: RUN/checkpoints/*.ckpt, RUN/model/)."""
    start = checkpoint.resolve() if checkpoint.is_dir() else checkpoint.resolve().parent
    return next((d for d in (start, *start.parents)[:3] if (d / "config.yaml").is_file()), None)


def _stages(source: Path | None, limit: int = 8) -> list[Path]:
    """Run directories from the first training stage to the one that wrote `source`, following init_checkpoint."""
    stages: list[Path] = []
    path = source
    while path is not None and path.exists() and len(stages) < limit:
        run = run_directory(path)
        if run is None or run in stages:
            break
        stages.insert(0, run)
        init = _model_section(_config(run)).get("init_checkpoint")
        path = Path(init) if init else None
    return stages


def _stage_section(n: int, run: Path) -> list[str]:
    config = _config(run)
    model, trainer = _model_section(config), config.get("trainer") or {}
    data = config.get("data") or {}
    data = data.get("init_args") or data
    meta = _json(run / "run.json")
    settings = {
        "run directory": run.name,
        "started from": model.get("init_checkpoint") or "random initialisation",
        "model": (model.get("model_config") or {}),
        "peak learning rate": model.get("lr"),
        "steps": trainer.get("max_steps"),
        "data": {k: data.get(k) for k in ("recipe", "data_dir", "seq_len", "batch_size", "fim_rate", "spm_rate") if data.get(k) is not None},
        "precision": trainer.get("precision"),
        "seed": meta.get("seed", config.get("seed_everything")),
        "git commit": (meta.get("git") or {}).get("commit"),
    }
    lines = [f"### Stage {n}: {run.name}", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | `{json.dumps(v) if isinstance(v, dict) else v}` |" for k, v in settings.items() if v not in (None, {}, "")]
    lines += [""] + _corpus_lines(data) + _evaluation_lines(run)
    return lines


def _corpus_lines(data: dict[str, Any]) -> list[str]:
    report = _json(Path(data["data_dir"]) / "corpus.json") if data.get("data_dir") else {}
    if not report:
        return []
    fields = {k: report[k] for k in ("name", "fingerprint", "sha256", "documents", "tokens") if k in report}
    text = "Corpus: " + ", ".join(f"{k} `{v}`" for k, v in fields.items())
    if "mix" in report:
        text += f"; mix `{json.dumps(report['mix'])}`"
    return [text, ""]


def _evaluation_lines(run: Path) -> list[str]:
    rows = []
    metrics = _json(run / "metrics.json")  # a study run's measurements
    for m in metrics.get("measurements", []):
        coords = ", ".join(f"{k}={v}" for k, v in m.items() if k not in ("metric", "value"))
        rows.append((m.get("metric"), coords, m.get("value")))
    for summary in sorted(run.glob("eval/**/summary.json")):  # `python -m lit_codellama eval --out RUN/eval/...`
        for key, value in _json(summary).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                rows.append((key, str(summary.parent.relative_to(run)), value))
    if not rows:
        return []
    lines = ["Evaluation:", "", "| metric | where | value |", "|---|---|---|"]
    lines += [f"| {metric} | {where} | {value:.4g} |" for metric, where, value in rows]
    return lines + [""]


def _config(run: Path) -> dict[str, Any]:
    return yaml.safe_load((run / "config.yaml").read_text()) or {}


def _model_section(config: dict[str, Any]) -> dict[str, Any]:
    model = config.get("model") or {}
    return model.get("init_args") or model


def _json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


# ---------------------------------------------------------------------------------------------- command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lit_codellama convert",
        description="Convert any checkpoint this project loads (HF dir, our dir, Lightning .ckpt, DeepSpeed dir) "
        "to our format or to a Hugging Face directory that opens with transformers' Auto classes.",
    )
    parser.add_argument("source", type=Path, help="checkpoint to read")
    parser.add_argument("out", type=Path, help="directory to write")
    parser.add_argument("--to", choices=("ours", "hf"), default="ours", help="output format (default: ours)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), help="cast the weights")
    parser.add_argument("--tokenizer", type=Path, help="sentencepiece model (default: the checkpoint's run's)")
    parser.add_argument("--max-shard-size", default="5GB", help="hf: shard the weights above this size (default 5GB)")
    args = parser.parse_args(argv)
    tok = Tokenizer(args.tokenizer or find_tokenizer(args.source))
    model = load_model(args.source, dtype=getattr(torch, args.dtype) if args.dtype else None)
    if args.to == "hf":
        export_hf(model, tok, args.out, args.source, args.max_shard_size)
    else:
        check_vocabulary(model, tok)
        save_model(model, args.out)
        (args.out / "tokenizer.model").write_bytes(tok.path.read_bytes())
    print(f"wrote {args.out} ({model.num_params():,} parameters, {args.to} format, tokenizer {tok.path})")
    return 0
