"""Batched generation with the KV cache: greedy or temperature/top-p sampling, stop ids and stop strings, infilling."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from lit_codellama.arguments import ArgumentParser, fraction, non_negative_float, positive_int
from lit_codellama.checkpoint import load_for_inference
from lit_codellama.fim import infilling_prompt
from lit_codellama.model import Llama
from lit_codellama.tokenizer import Tokenizer


@dataclass(frozen=True)
class SamplingConfig:
    """How `complete`, `infill` and the evaluations choose new tokens: greedy when `temperature` is 0, else
    temperature and nucleus (`top_p`) sampling, drawn from a generator seeded with `seed`."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 0.95
    seed: int = 0

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SamplingConfig:
        """From a command line's --max-new-tokens, --temperature, --top-p and --seed."""
        return cls(args.max_new_tokens, args.temperature, args.top_p, args.seed)

    def generator(self, device: torch.device | str) -> torch.Generator:
        return torch.Generator(device=device).manual_seed(self.seed)


def sample(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> torch.Tensor:
    """Next token ids (B,) from last-position logits (B, vocab)."""
    if temperature == 0.0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        outside_nucleus = sorted_probs.cumsum(dim=-1) - sorted_probs > top_p  # keeps the token that crosses top_p
        sorted_probs[outside_nucleus] = 0.0
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


def _left_padded(prompts: Sequence[Sequence[int]], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (B, L) padded on the left, and each row's number of padding tokens (B,)."""
    length = max(len(p) for p in prompts)
    idx = torch.zeros(len(prompts), length, dtype=torch.long, device=device)
    for row, prompt in enumerate(prompts):
        idx[row, length - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
    pad = torch.tensor([length - len(p) for p in prompts], device=device)
    return idx, pad


@torch.inference_mode()
def generate(
    model: Llama,
    prompts: Sequence[Sequence[int]],
    sampling: SamplingConfig,
    stop_ids: Sequence[int] = (),
    should_stop: Callable[[list[int]], bool] | None = None,
    generator: torch.Generator | None = None,
) -> list[list[int]]:
    """New tokens for each prompt (prompts may differ in length: they are left-padded into one batch).

    A sequence ends at a token in `stop_ids` (not returned) or when `should_stop(new_tokens)` is true. `generator`
    continues a random stream across calls (default: a fresh one from `sampling.seed`).
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("generate needs at least one prompt and every prompt needs at least one token (e.g. BOS)")
    device = model.output.weight.device
    max_new_tokens = sampling.max_new_tokens
    generator = generator or sampling.generator(device)
    idx, pad = _left_padded(prompts, device)
    B, L = idx.shape
    max_len = L + max_new_tokens
    key_is_real = torch.arange(max_len, device=device)[None, :] >= pad[:, None]  # (B, S): False on left padding
    padded = bool(pad.any())
    model.setup_kv_cache(B, max_len)
    try:
        causal = torch.ones(L, L, dtype=torch.bool, device=device).tril()
        # Padding queries attend to themselves so that no softmax row is empty (an empty row would be NaN).
        mask = (causal & key_is_real[:, None, None, :L]) | torch.eye(L, dtype=torch.bool, device=device)
        positions = (torch.arange(L, device=device)[None, :] - pad[:, None]).clamp(min=0)
        hidden = model.hidden_states(idx, input_pos=torch.arange(L, device=device), positions=positions, mask=mask)
        logits = model.output(hidden[:, -1])  # only the last position's: the whole prompt's cost a B x L x vocab matmul
        new_tokens: list[list[int]] = [[] for _ in range(B)]
        running = [True] * B
        for step in range(max_new_tokens):
            next_ids = sample(logits, sampling.temperature, sampling.top_p, generator)
            for row, token in enumerate(next_ids.tolist()):
                if not running[row]:
                    continue
                if token in stop_ids:
                    running[row] = False
                    continue
                new_tokens[row].append(token)
                if should_stop is not None and should_stop(new_tokens[row]):
                    running[row] = False
            if not any(running) or step == max_new_tokens - 1:
                break
            pos = L + step
            logits = model(
                next_ids[:, None],
                input_pos=torch.tensor([pos], device=device),
                positions=(pos - pad)[:, None] if padded else None,
                mask=key_is_real[:, None, None, : pos + 1] if padded else None,  # unmasked attention is faster
            )[:, -1]
        return new_tokens
    finally:
        model.clear_kv_cache()


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=len(text))
    return text[:cut]


def _batches(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def complete(
    model: Llama,
    tok: Tokenizer,
    prompts: Sequence[str],
    sampling: SamplingConfig = SamplingConfig(),
    stop: Sequence[str] = (),
    batch_size: int = 8,
    generator: torch.Generator | None = None,
) -> list[str]:
    """Left-to-right completions of text prompts, cut at the first stop string. generator: shared across calls
    (e.g. by an evaluation's batches); default a fresh one from `sampling.seed`."""

    # A stop string that the newest token completes lies within the last `window` tokens (<= 4 byte pieces per
    # character), and text decoded from them is text of the whole. Missing one (a token decoding to "") only
    # costs tokens: the text is cut at its first stop string anyway.
    window = 4 * max(map(len, stop), default=0) + 2

    def hit_stop(tokens: list[int]) -> bool:
        if not stop:
            return False
        text = tok.decode(tokens[-window:])
        return any(s in text for s in stop)

    s, generator = sampling, generator or sampling.generator(model.output.weight.device)
    completions = []
    for batch in _batches(prompts, batch_size):
        encoded = [tok.encode(p, bos=True) for p in batch]
        outputs = generate(model, encoded, s, (tok.eos_id,), hit_stop, generator)
        completions += [truncate_at_stop(tok.decode(o), stop) for o in outputs]
    return completions


def infill(
    model: Llama,
    tok: Tokenizer,
    prefixes: Sequence[str],
    suffixes: Sequence[str],
    suffix_first: bool = False,
    sampling: SamplingConfig = SamplingConfig(max_new_tokens=128),
    batch_size: int = 8,
    generator: torch.Generator | None = None,
) -> list[str]:
    """The middle between each prefix and suffix (PSM, or SPM with `suffix_first`), generated until EOT."""
    if len(prefixes) != len(suffixes):
        raise ValueError(f"got {len(prefixes)} prefixes but {len(suffixes)} suffixes")
    pairs = list(zip(prefixes, suffixes))
    s, generator = sampling, generator or sampling.generator(model.output.weight.device)
    middles = []
    for batch in _batches(pairs, batch_size):
        encoded = [infilling_prompt(tok, prefix, suffix, suffix_first=suffix_first) for prefix, suffix in batch]
        outputs = generate(model, encoded, s, (tok.eot_id, tok.eos_id), None, generator)
        middles += [tok.decode_infilling(o) for o in outputs]
    return middles


def add_model_arguments(parser: argparse.ArgumentParser, max_new_tokens: int) -> None:
    """The options of every command that generates: the checkpoint, where and in which dtype it runs, sampling."""
    parser.add_argument("--checkpoint", type=Path, required=True, help="HF directory, our model directory, or a Lightning .ckpt")
    parser.add_argument("--tokenizer", type=Path, help="sentencepiece model (default: tokenizer.model beside the checkpoint)")
    parser.add_argument("--device", type=_device, help="e.g. cpu, cuda, cuda:1 (default: cuda if available, else cpu)")
    parser.add_argument(
        "--dtype", choices=DTYPES, help="weights and activations (default: float32 on CPU, bfloat16 on GPUs with it)"
    )
    parser.add_argument("--max-new-tokens", type=positive_int, default=max_new_tokens)
    parser.add_argument("--temperature", type=non_negative_float, default=0.0, help="0 means greedy")
    parser.add_argument("--top-p", type=fraction, default=0.95)
    parser.add_argument("--seed", type=int, default=0)


DTYPES = ("float32", "bfloat16", "float16")


def _device(text: str) -> torch.device:
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a device; use e.g. cpu, cuda or cuda:1") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError("cuda is not available here (torch.cuda.is_available() is False); use cpu")
    return device


def load_from_args(args: argparse.Namespace) -> tuple[Llama, Tokenizer]:
    dtype = getattr(torch, args.dtype) if args.dtype else None
    return load_for_inference(args.checkpoint, args.device, dtype, tokenizer=args.tokenizer)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m lit_codellama generate",
        description="Generate from a checkpoint: a left-to-right completion of --prompt, or the middle between --prefix and --suffix.",
    )
    add_model_arguments(parser, max_new_tokens=128)
    parser.add_argument("--prompt", help="text to continue")
    parser.add_argument("--prefix", help="code before the hole (infilling)")
    parser.add_argument("--suffix", help="code after the hole (infilling)")
    parser.add_argument("--spm", action="store_true", help="suffix-prefix-middle prompt order for infilling")
    parser.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    args = parser.parse_args(argv)
    if (args.prompt is None) == (args.prefix is None and args.suffix is None):
        parser.error("give either --prompt, or --prefix and/or --suffix")

    model, tok = load_from_args(args)
    sampling = SamplingConfig.from_args(args)
    if args.prompt is not None:
        [text] = complete(model, tok, [args.prompt], sampling, stop=args.stop)
        print(args.prompt + text)
    else:
        prefix, suffix = args.prefix or "", args.suffix or ""
        [middle] = infill(model, tok, [prefix], [suffix], suffix_first=args.spm, sampling=sampling)
        print(prefix + middle + suffix)
    return 0


if __name__ == "__main__":
    sys.exit(main())
