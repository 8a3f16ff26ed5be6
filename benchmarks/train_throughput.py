"""What does the Lightning loop cost? Training tokens/s and FLOP/s of the full `fit` loop (CodeLlamaLM, the CLI's
callbacks and loggers, CodeDataModule with FIM) against a bare PyTorch loop over the same model, optimizer,
schedule, clipping and DataModule (goal: Lightning overhead at most 5%), and against transformers'
LlamaForCausalLM of the same shape trained in that bare loop (goal: ours at least 1.2x).

    python benchmarks/train_throughput.py [--presets cl-10m cl-30m] [--steps 8] [--rounds 2]

Arms run interleaved (bare, Lightning, transformers, bare, ...), and each arm's median step time over all its
rounds is reported (the first steps of a round are warm-up), so background load affects all arms alike.
Step time is end-of-step to end-of-step, data loading included. The CPU matmul ceiling (FLOP/s of a 1024^2
matmul) is measured before every arm; on a shared machine it moves less than model steps do (other processes
mostly take memory bandwidth), so fractions of it are indicative only.
Results: benchmarks/results/train_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.utilities.throughput import measure_flops
from transformers import LlamaConfig, LlamaForCausalLM

from lit_codellama import Llama, ModelConfig
from lit_codellama.data import CodeDataModule
from lit_codellama.training import train
from lit_codellama.training.callbacks import measure_matmul_flops
from lit_codellama.training.module import IGNORE_INDEX, next_token_nats
from lit_codellama.training.optim import cosine_with_warmup, param_groups

RESULTS = Path(__file__).parent / "results" / "train_throughput.json"
WARMUP = 2
LR, WARMUP_STEPS, MAX_STEPS = 1e-3, 100, 2000  # code-small.yaml's optimizer settings


class StepTimer(L.Callback):
    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_batch_end(self, *args) -> None:
        self.ends.append(time.perf_counter())


def step_times(ends: list[float]) -> list[float]:
    return [b - a for a, b in zip(ends[WARMUP:], ends[WARMUP + 1 :])]


def lightning_steps(preset: str, data: dict, steps: int) -> list[float]:
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as run_dir:
        config = {
            "seed_everything": 1234,
            "trainer": {"accelerator": "cpu", "devices": 1, "max_steps": WARMUP + steps + 1, "gradient_clip_val": 1.0,
                        "limit_val_batches": 0, "enable_progress_bar": False, "enable_model_summary": False,
                        "log_every_n_steps": 10, "default_root_dir": run_dir},
            "model": {"model_config": {"preset": preset}, "lr": LR, "warmup_steps": WARMUP_STEPS,
                      "decay_steps": MAX_STEPS},
            "checkpoint": {"every_n_train_steps": 10_000},
            "data": data,
        }
        train(config, callbacks=[timer])
    return step_times(timer.ends)


def bare_steps(model: torch.nn.Module, data: dict, steps: int) -> list[float]:
    """The same optimisation as CodeLlamaLM, written out: AdamW groups, cosine schedule, clipping at 1.0."""
    dm = CodeDataModule(**data)
    dm.setup("fit")
    optimizer = torch.optim.AdamW(param_groups(model, 0.1), lr=LR, betas=(0.9, 0.95), eps=1e-5)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: cosine_with_warmup(s, WARMUP_STEPS, MAX_STEPS, min_lr_ratio=1 / 30)
    )
    ends = []
    for step, batch in enumerate(dm.train_dataloader()):
        if step == WARMUP + steps + 1:
            break
        logits = model(batch["input_ids"])
        logits = logits if isinstance(logits, torch.Tensor) else logits.logits
        labels = batch["labels"]
        loss = next_token_nats(logits, labels).sum() / (labels != IGNORE_INDEX).sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        schedule.step()
        ends.append(time.perf_counter())
    return step_times(ends)


def transformers_model(config: ModelConfig) -> LlamaForCausalLM:
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=config.vocab_size, hidden_size=config.n_embd, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.n_layer, num_attention_heads=config.n_head, num_key_value_heads=config.n_kv_head,
        max_position_embeddings=config.block_size, rope_theta=config.rope_theta, rms_norm_eps=config.norm_eps,
        tie_word_embeddings=False, attn_implementation="sdpa",
    ))


def benchmark(preset: str, data: dict, steps: int, rounds: int) -> dict:
    vocab_size = CodeDataModule(**data).tokenizer.vocab_size
    config = ModelConfig.from_name(preset, vocab_size=vocab_size)
    with torch.device("meta"):
        meta, x = Llama(config), torch.empty(data["batch_size"], data["seq_len"], dtype=torch.long)
    flops_per_step = measure_flops(meta, lambda: meta(x), lambda y: y.sum())
    tokens_per_step = data["batch_size"] * data["seq_len"]
    times: dict[str, list[float]] = {"pytorch": [], "lightning": [], "transformers": []}
    ceilings = []
    for round_ in range(rounds):
        torch.manual_seed(round_)
        ceilings.append(measure_matmul_flops())
        times["pytorch"] += bare_steps(Llama(config), data, steps)
        ceilings.append(measure_matmul_flops())
        times["lightning"] += lightning_steps(preset, data, steps)
        torch.manual_seed(round_)
        ceilings.append(measure_matmul_flops())
        times["transformers"] += bare_steps(transformers_model(config), data, steps)
        print(f"{preset} round {round_ + 1}/{rounds}: " + ", ".join(
            f"{arm} {statistics.median(t):.3f} s/step" for arm, t in times.items()), flush=True)
    ceiling = statistics.median(ceilings)
    arms = {}
    for arm, arm_times in times.items():
        median = statistics.median(arm_times)
        arms[arm] = {"step_s": median, "tokens_per_s": tokens_per_step / median, "flop_per_s": flops_per_step / median,
                     "fraction_of_matmul_ceiling": flops_per_step / median / ceiling, "steps_timed": len(arm_times)}
    return {
        "params": Llama(config).num_params(),
        "matmul_ceiling_flop_per_s": {"median": ceiling, "min": min(ceilings), "max": max(ceilings)},
        "flops_per_step": flops_per_step,
        "tokens_per_step": tokens_per_step,
        "arms": arms,
        "lightning_overhead": 1 - arms["lightning"]["tokens_per_s"] / arms["pytorch"]["tokens_per_s"],
        "speedup_vs_transformers": arms["pytorch"]["tokens_per_s"] / arms["transformers"]["tokens_per_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["cl-10m", "cl-30m"])
    parser.add_argument("--recipe", default="default", help="data recipe (built and cached on first use)")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per arm and round (after 2 warm-up)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    data = {"recipe": args.recipe, "seq_len": args.seq_len, "batch_size": args.batch_size, "fim_rate": 0.9}
    results = {
        "device": f"{platform.machine()} x{torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "lightning": L.__version__,
        "args": vars(args),
        "models": {preset: benchmark(preset, data, args.steps, args.rounds) for preset in args.presets},
    }
    for preset, r in results["models"].items():
        arms = r["arms"]
        print(f"{preset}: Lightning {arms['lightning']['tokens_per_s']:.0f} tok/s, bare PyTorch "
              f"{arms['pytorch']['tokens_per_s']:.0f} tok/s (overhead {r['lightning_overhead']:+.1%}; goal <= 5%), "
              f"transformers {arms['transformers']['tokens_per_s']:.0f} tok/s "
              f"(ours {r['speedup_vs_transformers']:.2f}x; goal >= 1.2x); "
              f"Lightning {arms['lightning']['flop_per_s'] / 1e9:.1f} GFLOP/s = "
              f"{arms['lightning']['fraction_of_matmul_ceiling']:.0%} of the matmul ceiling")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"saved {RESULTS}")


if __name__ == "__main__":
    main()
