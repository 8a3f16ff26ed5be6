"""Training-step and cached-generation throughput of our Llama vs transformers.LlamaForCausalLM, same shape and weights.

    python benchmarks/model_throughput.py                 # CPU: cl-10m and cl-30m, fp32 and bf16
    python benchmarks/model_throughput.py --device cuda   # GPU: cl-1b in bf16, MFU against the card's dense peak

Both models, in every precision asked for, run interleaved in one process (A, B, A', B', A, B, ...) and the median
of the rounds is reported, so background load affects all alike. Training runs in Lightning's precisions
(`32-true`; `bf16-mixed`: float32 weights, bf16 autocast); generation in the precision's weight dtype. Training
FLOP/s are compared with a square matmul's in the same dtype; batch-1 decoding reads every weight once per token, so
its weight bytes/s are compared with a matrix-vector product's (the memory-bandwidth ceiling). The first step of
each (torch.compile's compilation with --compile) is timed apart. Results, with the CPU model, its bf16 flags and the
load average, are printed and saved as JSON under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import LlamaForCausalLM

from lit_codellama import Llama, ModelConfig
from lit_codellama.checkpoint import save_model
from lit_codellama.precision import cpu_info

GPU_PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense bf16 FLOP/s
DTYPES = {"32-true": torch.float32, "bf16-mixed": torch.bfloat16}  # matmul and generation dtype of each precision


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def best_rate(amount: float, fn, device: str, trials: int = 5) -> float:
    """`amount` per second of `fn`, the best of `trials` after a warm-up (a ceiling: a busy moment must not
    lower it)."""
    fn()
    return max(amount / timed(fn, device) for _ in range(trials))


def matmul_ceiling(device: str, dtype: torch.dtype, n: int = 1024, repeats: int = 20) -> float:
    """FLOP/s of an n x n matmul: the practical compute peak of this machine."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    return best_rate(2 * n**3 * repeats, lambda: [a @ b for _ in range(repeats)], device)


def matvec_bandwidth(device: str, dtype: torch.dtype, n: int = 4096, repeats: int = 20) -> float:
    """Bytes/s of an n x n matrix-vector product, which reads the matrix once: the ceiling of batch-1 decoding,
    where every new token reads every weight matrix."""
    a, x = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, device=device, dtype=dtype)
    return best_rate(a.numel() * a.element_size() * repeats, lambda: [a @ x for _ in range(repeats)], device)


def timed(fn, device: str) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def build_pair(name: str, device: str, vocab_size: int) -> dict[str, torch.nn.Module]:
    """Ours and transformers' model with the same float32 weights."""
    torch.manual_seed(0)
    ours = Llama(ModelConfig.from_name(name, vocab_size=vocab_size))
    with tempfile.TemporaryDirectory() as tmp:
        save_model(ours, tmp, hf_format=True)
        hf = LlamaForCausalLM.from_pretrained(tmp, attn_implementation="sdpa", torch_dtype=torch.float32)
    return {"ours": ours.to(device), "transformers": hf.to(device)}


def interleaved(runs: dict, rounds: int, device: str) -> tuple[dict, dict, dict]:
    """Seconds of every run in each of `rounds` rounds (one of each per round), and of each one's first call and
    what that call returned."""
    first, values = {}, {}
    for name, run in runs.items():
        sync(device)
        start = time.perf_counter()
        values[name] = run()
        sync(device)
        first[name] = time.perf_counter() - start
    for run in runs.values():  # a second warm-up: allocator, optimizer state
        run()
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            times[name].append(timed(run, device))
    return times, first, values


def train_step_fn(model, forward, batch, optimizer, precision: str, device: str):
    autocast = torch.autocast(device, dtype=torch.bfloat16) if precision == "bf16-mixed" else contextlib.nullcontext()

    def step():
        with autocast:
            logits = forward(model, batch)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), batch[:, 1:].flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def forward_ours(model, batch):
    return model(batch)


def forward_hf(model, batch):
    return model(batch).logits


def bench_training(models, args, device) -> dict:
    ours = models["ours"]
    batch = torch.randint(0, ours.config.vocab_size, (args.batch_size, args.seq_len), device=device)
    wrap = torch.compile if args.compile else (lambda fn: fn)
    forwards = {"ours": forward_ours, "transformers": forward_hf}
    steps = {
        (precision, name): train_step_fn(
            model, wrap(forwards[name]), batch, torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device == "cuda"),
            precision, device,
        )
        for precision in args.precisions
        for name, model in models.items()
    }
    # The first call's loss shows that both sides compute the same thing.
    times, first, values = interleaved(steps, args.rounds, device)
    tokens = args.batch_size * args.seq_len
    flops = ours.flops_per_token(args.seq_len) * tokens
    result = {precision: {} for precision in args.precisions}
    for (precision, name), t in times.items():
        result[precision][name] = {"tokens_per_s": tokens / statistics.median(t), "flop_per_s": flops / statistics.median(t),
                                   "first_step_s": first[precision, name], "initial_loss": float(values[precision, name])}
    for entry in result.values():
        entry["speedup"] = entry["ours"]["tokens_per_s"] / entry["transformers"]["tokens_per_s"]
    return result


@torch.inference_mode()
def bench_generation(models, args, device, batch_size: int) -> dict:
    from lit_codellama.generate import SamplingConfig, generate

    vocab_size = models["ours"].config.vocab_size
    prompt = torch.randint(3, vocab_size, (batch_size, args.prompt_len), device=device)
    n = args.new_tokens
    runs, weight_bytes = {}, {}
    for precision in args.precisions:
        ours, hf = (copy.deepcopy(models[name]).to(DTYPES[precision]) for name in ("ours", "transformers"))
        runs[precision, "ours"] = lambda ours=ours: generate(ours, prompt.tolist(), SamplingConfig(max_new_tokens=n))
        runs[precision, "transformers"] = lambda hf=hf: hf.generate(
            prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0, eos_token_id=None
        )[:, args.prompt_len :].tolist()
        # What a decode step reads in full: every weight matrix (of the embedding table, only the new tokens' rows).
        matrices = [m.weight for m in ours.modules() if isinstance(m, torch.nn.Linear)]
        weight_bytes[precision] = sum(w.numel() * w.element_size() for w in matrices)
    times, _, outputs = interleaved(runs, args.rounds, device)  # the same work is the same greedy tokens
    result = {precision: {} for precision in args.precisions}
    for (precision, name), t in times.items():
        steps_per_s = n / statistics.median(t)
        result[precision][name] = {"tokens_per_s": batch_size * steps_per_s,
                                   "weight_bytes_per_s": weight_bytes[precision] * steps_per_s,
                                   "new_tokens": sum(len(row) for row in outputs[precision, name])}
    for precision, entry in result.items():
        entry["speedup"] = entry["ours"]["tokens_per_s"] / entry["transformers"]["tokens_per_s"]
        entry["same_tokens"] = outputs[precision, "ours"] == outputs[precision, "transformers"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--presets", nargs="+", help="default: cl-10m cl-30m on CPU, cl-1b on CUDA")
    parser.add_argument("--precisions", nargs="+", choices=sorted(DTYPES),
                        help="default: 32-true bf16-mixed on CPU, bf16-mixed on CUDA")
    parser.add_argument("--vocab-size", type=int, default=None, help="default: 4096 on CPU, 32016 on CUDA")
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--gen-batches", type=int, nargs="+", default=[1, 8], help="generation batch sizes")
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--compile", action="store_true", help="torch.compile both models' training step forward")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    cuda = args.device == "cuda"
    args.precisions = args.precisions or (["bf16-mixed"] if cuda else ["32-true", "bf16-mixed"])
    presets = args.presets or (["cl-1b"] if cuda else ["cl-10m", "cl-30m"])
    vocab_size = args.vocab_size or (32016 if cuda else 4096)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True

    n = 8192 if cuda else 1024
    ceilings = {p: matmul_ceiling(args.device, DTYPES[p], n=n) for p in args.precisions}
    bandwidth = {p: matvec_bandwidth(args.device, DTYPES[p]) for p in args.precisions}
    device_name = torch.cuda.get_device_name() if cuda else f"{cpu_info()['model']} x{torch.get_num_threads()} threads"
    peak = next((v for k, v in GPU_PEAK_BF16.items() if k in device_name), None) if cuda else None
    report = {"device": device_name, "cpu": cpu_info(), "torch": torch.__version__,
              "load_average_at_start": os.getloadavg(), "matmul_ceiling_flop_per_s": ceilings,
              "matvec_bytes_per_s": bandwidth, "peak_flop_per_s": peak,
              "args": {k: str(v) for k, v in vars(args).items()}, "models": {}}
    print(f"{device_name} (bf16 flags: {cpu_info()['bf16_flags'] or 'none'}), load average {os.getloadavg()[0]:.1f}")
    for p in args.precisions:
        print(f"  {p}: {n}-square matmul ceiling {ceilings[p] / 1e9:.1f} GFLOP/s, "
              f"matrix-vector product reads {bandwidth[p] / 1e9:.1f} GB/s")
    for name in presets:
        models = build_pair(name, args.device, vocab_size)
        entry = {"params": models["ours"].num_params(), "training": bench_training(models, args, args.device),
                 "generation": {f"batch_{b}": bench_generation(models, args, args.device, b) for b in args.gen_batches}}
        report["models"][name] = entry
        print(f"{name} ({entry['params'] / 1e6:.1f}M params)")
        for p, t in entry["training"].items():
            achieved = t["ours"]["flop_per_s"]
            t["ours_fraction_of_matmul_ceiling"] = achieved / ceilings[p]
            if peak:
                t["ours_mfu"] = achieved / peak
                t["transformers_mfu"] = t["transformers"]["flop_per_s"] / peak
            print(
                f"  training {p}: ours {t['ours']['tokens_per_s']:,.0f} tok/s ({achieved / 1e9:,.1f} GFLOP/s = "
                f"{achieved / ceilings[p]:.0%} of the {p} matmul ceiling" + (f", MFU {achieved / peak:.1%}" if peak else "")
                + f"; first step {t['ours']['first_step_s']:.1f} s), transformers {t['transformers']['tokens_per_s']:,.0f}"
                f" tok/s -> {t['speedup']:.2f}x"
            )
        if {"32-true", "bf16-mixed"} <= set(args.precisions):
            t = entry["training"]
            entry["training"]["ours_bf16_over_fp32"] = t["bf16-mixed"]["ours"]["tokens_per_s"] / t["32-true"]["ours"]["tokens_per_s"]
            print(f"  training bf16-mixed / 32-true (ours): {entry['training']['ours_bf16_over_fp32']:.2f}x")
        for batch, by_precision in entry["generation"].items():
            for p, g in by_precision.items():
                print(
                    f"  generation {batch.replace('_', ' ')} {p}: ours {g['ours']['tokens_per_s']:,.1f} tok/s (weights read "
                    f"at {g['ours']['weight_bytes_per_s'] / bandwidth[p]:.0%} of the matrix-vector rate), "
                    f"transformers {g['transformers']['tokens_per_s']:,.1f} tok/s -> {g['speedup']:.2f}x"
                )
        del models
    report["load_average_at_end"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"model_throughput_{args.device}{'_compiled' if args.compile else ''}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
