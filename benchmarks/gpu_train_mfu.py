"""MFU of the ~1B preset (cl-1b) trained by CodeLlamaLM in bf16-mixed on one GPU: Lightning's single-device
strategy (goal: at least 50%) and DeepSpeed ZeRO-3 on the same GPU (skipped, with the reason, when deepspeed
is not installed). Prints one JSON line; `--out FILE` also writes it.

    python benchmarks/gpu_train_mfu.py [--batch-size 8] [--seq-len 2048] [--steps 20] [--no-compile] [--out FILE]

Random token batches (throughput does not depend on the data), so only torch, lightning and torchmetrics are
needed. FLOPs per step come from `Llama.flops_per_token` (6N + 12·L·H·T, the formula training's MFU uses) and are
checked against what `measure_flops` counts for forward + backward; the peak is the card's dense bf16 datasheet number. Step time is end-of-step to
end-of-step after the warm-up steps (which include torch.compile), synchronised by Lightning's `.item()` calls.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import time

import lightning as L
import torch
from lightning.fabric.utilities.throughput import measure_flops
from torch.utils.data import DataLoader, IterableDataset

from lit_codellama import Llama, ModelConfig
from lit_codellama.training.module import CodeLlamaLM

DENSE_BF16_PEAK = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # FLOP/s (SXM datasheets)
PRESET = "cl-1b"


class RandomTokens(IterableDataset):
    def __init__(self, vocab_size: int, seq_len: int) -> None:
        self.vocab_size, self.seq_len = vocab_size, seq_len

    def __iter__(self):
        while True:
            tokens = torch.randint(0, self.vocab_size, (self.seq_len + 1,))
            yield {"input_ids": tokens[:-1], "labels": tokens[1:]}


class StepTimer(L.Callback):
    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_batch_end(self, *args) -> None:
        torch.cuda.synchronize()
        self.ends.append(time.perf_counter())


def peak_flops() -> float | None:
    name = torch.cuda.get_device_name()
    return next((peak for key, peak in DENSE_BF16_PEAK.items() if key in name), None)


def run(strategy: str, args: argparse.Namespace, flops_per_step: float) -> dict:
    config = ModelConfig.from_name(PRESET)
    timer = StepTimer()
    module = CodeLlamaLM({"preset": PRESET}, lr=3e-4, warmup_steps=100, decay_steps=10_000,
                         compile=args.compile and strategy == "single_device")
    if strategy == "deepspeed_zero3":
        from lightning.pytorch.strategies import DeepSpeedStrategy

        trainer_strategy = DeepSpeedStrategy(stage=3)
    else:
        trainer_strategy = "auto"
    trainer = L.Trainer(
        accelerator="cuda", devices=1, precision="bf16-mixed", strategy=trainer_strategy,
        max_steps=args.warmup + args.steps + 1, gradient_clip_val=1.0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
    )
    loader = DataLoader(RandomTokens(config.vocab_size, args.seq_len), batch_size=args.batch_size,
                        num_workers=2, pin_memory=True)
    torch.cuda.reset_peak_memory_stats()
    trainer.fit(module, loader)
    times = [b - a for a, b in zip(timer.ends[args.warmup :], timer.ends[args.warmup + 1 :])]
    step_s = statistics.median(times)
    peak = peak_flops()
    return {
        "step_s": step_s,
        "tokens_per_s": args.batch_size * args.seq_len / step_s,
        "flop_per_s": flops_per_step / step_s,
        "mfu": None if peak is None else flops_per_step / step_s / peak,
        "max_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
        "compiled": module.hparams.compile,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per strategy")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation, allocator)")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="eager single-device run")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_train_mfu.py needs a CUDA GPU; benchmarks/train_throughput.py is the CPU benchmark")

    config = ModelConfig.from_name(PRESET)
    with torch.device("meta"):
        meta, x = Llama(config), torch.empty(args.batch_size, args.seq_len, dtype=torch.long)
    flops_per_step = meta.flops_per_token(args.seq_len) * args.batch_size * args.seq_len  # what training's MFU uses
    measured = measure_flops(meta, lambda: meta(x), lambda y: y.sum())
    results = {
        "device": torch.cuda.get_device_name(),
        "peak_bf16_flop_per_s": peak_flops(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "preset": PRESET,
        "params": meta.num_params(),
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "flops_per_step": flops_per_step,
        "flops_per_step_measured": measured,
        "single_device": run("single_device", args, flops_per_step),
    }
    if importlib.util.find_spec("deepspeed") is None:
        results["deepspeed_zero3"] = {"skipped": "deepspeed is not installed here (pip install deepspeed)"}
    else:
        results["deepspeed_zero3"] = run("deepspeed_zero3", args, flops_per_step)
    line = json.dumps(results)
    print(line)
    if args.out:
        with open(args.out, "w") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
