"""Training-step and cached-generation throughput of our Llama vs transformers.LlamaForCausalLM, same shape and weights.

    python benchmarks/model_throughput.py                 # CPU: cl-10m and cl-30m, fp32
    python benchmarks/model_throughput.py --device cuda   # GPU: cl-1b in bf16, MFU against the card's dense peak

Both models run interleaved in one process (A, B, A, B, ...) and the median of the rounds is reported, so
background load affects both alike. Training FLOP/s are compared with a square matmul's; batch-1 decoding reads
every weight once per token, so its weight bytes/s are compared with a matrix-vector product's (the memory-bandwidth
ceiling). Results are printed and saved as JSON under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import LlamaForCausalLM

from lit_codellama import Llama, ModelConfig
from lit_codellama.checkpoint import save_model

GPU_PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense bf16 FLOP/s


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


def build_pair(name: str, device: str, dtype: torch.dtype, vocab_size: int) -> tuple[Llama, LlamaForCausalLM]:
    torch.manual_seed(0)
    ours = Llama(ModelConfig.from_name(name, vocab_size=vocab_size))
    with tempfile.TemporaryDirectory() as tmp:
        save_model(ours, tmp, hf_format=True)
        hf = LlamaForCausalLM.from_pretrained(tmp, attn_implementation="sdpa")
    return ours.to(device=device, dtype=dtype), hf.to(device=device, dtype=dtype)


def train_step_fn(model, forward, batch, optimizer):
    def step():
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


def bench_training(ours, hf, args, device) -> dict:
    batch = torch.randint(0, ours.config.vocab_size, (args.batch_size, args.seq_len), device=device)
    wrap = torch.compile if args.compile else (lambda fn: fn)
    steps = {
        "ours": train_step_fn(ours, wrap(forward_ours), batch, torch.optim.AdamW(ours.parameters(), lr=1e-4, fused=device == "cuda")),
        "transformers": train_step_fn(hf, wrap(forward_hf), batch, torch.optim.AdamW(hf.parameters(), lr=1e-4, fused=device == "cuda")),
    }
    # Warm-up (allocator, optimizer state). The first loss shows that both sides compute the same thing.
    initial_loss = {}
    for name, step in steps.items():
        initial_loss[name] = float(step())
        step()
    times = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            times[name].append(timed(step, device))
    tokens = args.batch_size * args.seq_len
    flops = ours.flops_per_token(args.seq_len) * tokens
    result = {name: {"tokens_per_s": tokens / statistics.median(t), "flop_per_s": flops / statistics.median(t),
                     "initial_loss": initial_loss[name]} for name, t in times.items()}
    result["speedup"] = result["ours"]["tokens_per_s"] / result["transformers"]["tokens_per_s"]
    return result


@torch.inference_mode()
def bench_generation(ours, hf, args, device, batch_size: int) -> dict:
    from lit_codellama.generate import generate

    prompt = torch.randint(3, ours.config.vocab_size, (batch_size, args.prompt_len), device=device)
    n = args.new_tokens

    outputs = {}  # the new tokens of each side's last run: the same work is the same greedy tokens

    def run_ours():
        outputs["ours"] = generate(ours, prompt.tolist(), max_new_tokens=n)

    def run_hf():
        out = hf.generate(prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0, eos_token_id=None)
        outputs["transformers"] = out[:, args.prompt_len :].tolist()

    runs = {"ours": run_ours, "transformers": run_hf}
    for run in runs.values():
        run()
    times = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            times[name].append(timed(run, device))
    # What a decode step reads in full: every weight matrix (of the embedding table, only the new tokens' rows).
    matrices = [m.weight for m in ours.modules() if isinstance(m, torch.nn.Linear)]
    weight_bytes = sum(w.numel() * w.element_size() for w in matrices)
    result = {}
    for name, t in times.items():
        steps_per_s = n / statistics.median(t)
        result[name] = {"tokens_per_s": batch_size * steps_per_s, "weight_bytes_per_s": weight_bytes * steps_per_s,
                        "new_tokens": sum(len(row) for row in outputs[name])}
    result["speedup"] = result["ours"]["tokens_per_s"] / result["transformers"]["tokens_per_s"]
    result["same_tokens"] = outputs["ours"] == outputs["transformers"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--presets", nargs="+", help="default: cl-10m cl-30m on CPU, cl-1b on CUDA")
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
    dtype = torch.bfloat16 if cuda else torch.float32
    presets = args.presets or (["cl-1b"] if cuda else ["cl-10m", "cl-30m"])
    vocab_size = args.vocab_size or (32016 if cuda else 4096)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True

    ceiling = matmul_ceiling(args.device, dtype, n=8192 if cuda else 1024)
    bandwidth = matvec_bandwidth(args.device, dtype)
    device_name = torch.cuda.get_device_name() if cuda else f"{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"
    peak = next((v for k, v in GPU_PEAK_BF16.items() if k in device_name), None) if cuda else None
    report = {"device": device_name, "dtype": str(dtype), "torch": torch.__version__, "matmul_ceiling_flop_per_s": ceiling,
              "matvec_bytes_per_s": bandwidth,
              "peak_flop_per_s": peak, "args": {k: str(v) for k, v in vars(args).items()}, "models": {}}
    print(f"{device_name}: {'8192' if cuda else '1024'}-square {dtype} matmul ceiling {ceiling / 1e9:.1f} GFLOP/s, "
          f"matrix-vector product reads {bandwidth / 1e9:.1f} GB/s")
    for name in presets:
        ours, hf = build_pair(name, args.device, dtype, vocab_size)
        entry = {"params": ours.num_params(), "training": bench_training(ours, hf, args, args.device),
                 "generation": {f"batch_{b}": bench_generation(ours, hf, args, args.device, b) for b in args.gen_batches}}
        achieved = entry["training"]["ours"]["flop_per_s"]
        entry["training"]["ours_fraction_of_matmul_ceiling"] = achieved / ceiling
        if peak:
            entry["training"]["ours_mfu"] = achieved / peak
            entry["training"]["transformers_mfu"] = entry["training"]["transformers"]["flop_per_s"] / peak
        report["models"][name] = entry
        t = entry["training"]
        print(
            f"{name} ({entry['params'] / 1e6:.1f}M params) training: ours {t['ours']['tokens_per_s']:,.0f} tok/s "
            f"({achieved / 1e9:,.1f} GFLOP/s = {achieved / ceiling:.0%} of matmul ceiling"
            + (f", MFU {achieved / peak:.1%}" if peak else "")
            + f"), transformers {t['transformers']['tokens_per_s']:,.0f} tok/s -> {t['speedup']:.2f}x"
        )
        for batch, g in entry["generation"].items():
            print(
                f"  generation {batch.replace('_', ' ')}: ours {g['ours']['tokens_per_s']:,.1f} tok/s "
                f"(weights read at {g['ours']['weight_bytes_per_s'] / bandwidth:.0%} of the matrix-vector rate), "
                f"transformers {g['transformers']['tokens_per_s']:,.1f} tok/s -> {g['speedup']:.2f}x"
            )
        del ours, hf
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"model_throughput_{args.device}{'_compiled' if args.compile else ''}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
