"""What does the Lightning loop cost? Training tokens/s and FLOP/s of the full `fit` loop (CodeLlamaLM, the CLI's
callbacks and loggers, CodeDataModule with FIM) against a bare PyTorch loop over the same model, optimizer,
schedule and clipping (goal: Lightning overhead at most 5%), and against transformers' LlamaForCausalLM of the
same shape in that bare loop (goal: ours at least 1.2x faster).

    python benchmarks/train_throughput.py [--presets cl-10m cl-30m] [--steps 10]

Paired design, for a shared machine whose speed drifts by tens of percent within minutes: every step of the
Lightning run is followed, inside a callback, by one bare step of our model and one of the transformers model on
the same batch, each with its own optimizer. So each Lightning step is compared with bare steps taken seconds
apart, and the reported ratios are medians of per-step ratios. Lightning's step time runs from the end of the
previous bare steps to the end of its own step: data loading, hooks, logging and the optimizer step included.
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
from transformers import LlamaConfig, LlamaForCausalLM

from lit_codellama import Llama, ModelConfig
from lit_codellama.data import CodeDataModule
from lit_codellama.loss import IGNORE_INDEX, next_token_nats
from lit_codellama.training import train
from lit_codellama.training.callbacks import measure_matmul_flops
from lit_codellama.training.optim import cosine_with_warmup, param_groups

RESULTS = Path(__file__).parent / "results" / "train_throughput.json"
WARMUP = 2
LR, WARMUP_STEPS, MAX_STEPS = 1e-3, 100, 2000  # code-small.yaml's optimizer settings


class BareLoop:
    """CodeLlamaLM's optimisation written out: AdamW groups, cosine schedule, clipping at 1.0."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.optimizer = torch.optim.AdamW(param_groups(model, 0.1), lr=LR, betas=(0.9, 0.95), eps=1e-5)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: cosine_with_warmup(s, WARMUP_STEPS, MAX_STEPS, min_lr_ratio=1 / 30)
        )

    def step(self, batch: dict[str, torch.Tensor]) -> float:
        start = time.perf_counter()
        logits = self.model(batch["input_ids"])
        logits = logits if isinstance(logits, torch.Tensor) else logits.logits
        labels = batch["labels"]
        loss = next_token_nats(logits, labels).sum() / (labels != IGNORE_INDEX).sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.schedule.step()
        return time.perf_counter() - start


class PairedSteps(L.Callback):
    def __init__(self, bare: dict[str, BareLoop]) -> None:
        self.bare = bare
        self.times: dict[str, list[float]] = {"lightning": [], **{name: [] for name in bare}}
        self._resume: float | None = None

    def on_train_start(self, *args) -> None:
        self._resume = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.times["lightning"].append(time.perf_counter() - self._resume)
        for name, loop in self.bare.items():
            self.times[name].append(loop.step(batch))
        self._resume = time.perf_counter()


def transformers_model(config: ModelConfig) -> LlamaForCausalLM:
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=config.vocab_size, hidden_size=config.n_embd, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.n_layer, num_attention_heads=config.n_head, num_key_value_heads=config.n_kv_head,
        max_position_embeddings=config.block_size, rope_theta=config.rope_theta, rms_norm_eps=config.norm_eps,
        tie_word_embeddings=False, attn_implementation="sdpa",
    ))


def fit_config(preset: str, data: dict, max_steps: int, run_dir: str) -> dict:
    """The `fit` config every Lightning arm runs: code-small.yaml's optimisation, no validation, no checkpoints."""
    return {
        "seed_everything": 1234,
        "trainer": {"accelerator": "cpu", "devices": 1, "max_steps": max_steps, "gradient_clip_val": 1.0,
                    "limit_val_batches": 0, "enable_progress_bar": False, "enable_model_summary": False,
                    "log_every_n_steps": 10, "default_root_dir": run_dir},
        "model": {"model_config": {"preset": preset}, "lr": LR, "warmup_steps": WARMUP_STEPS, "decay_steps": MAX_STEPS},
        "checkpoint": {"every_n_train_steps": 10_000},
        "data": data,
    }


def benchmark(preset: str, data: dict, steps: int) -> dict:
    config = ModelConfig.from_name(preset, vocab_size=CodeDataModule(**data).tokenizer.vocab_size)
    tokens_per_step = data["batch_size"] * data["seq_len"]
    with torch.device("meta"):
        meta = Llama(config)
    flops_per_step = meta.flops_per_token(data["seq_len"]) * tokens_per_step
    torch.manual_seed(0)
    paired = PairedSteps({"pytorch": BareLoop(Llama(config)), "transformers": BareLoop(transformers_model(config))})
    ceiling_before = measure_matmul_flops()
    with tempfile.TemporaryDirectory() as run_dir:
        train(fit_config(preset, data, WARMUP + steps, run_dir), callbacks=[paired])
    ceiling = statistics.median([ceiling_before, measure_matmul_flops()])
    times = {arm: arm_times[WARMUP:] for arm, arm_times in paired.times.items()}
    arms = {}
    for arm, arm_times in times.items():
        median = statistics.median(arm_times)
        arms[arm] = {"step_s": median, "tokens_per_s": tokens_per_step / median, "flop_per_s": flops_per_step / median,
                     "fraction_of_matmul_ceiling": flops_per_step / median / ceiling, "step_s_all": arm_times}
    ratios = [lightning / bare for lightning, bare in zip(times["lightning"], times["pytorch"])]
    speedups = [hf / ours for hf, ours in zip(times["transformers"], times["pytorch"])]
    return {
        "params": meta.num_params(),
        "flops_per_step": flops_per_step,
        "tokens_per_step": tokens_per_step,
        "matmul_ceiling_flop_per_s": ceiling,
        "arms": arms,
        "lightning_overhead": statistics.median(ratios) - 1,
        "lightning_overhead_per_step": [r - 1 for r in ratios],
        "speedup_vs_transformers": statistics.median(speedups),
        "speedup_vs_transformers_per_step": speedups,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["cl-10m", "cl-30m"])
    parser.add_argument("--recipe", default="default", help="data recipe (built and cached on first use)")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help=f"timed steps per preset (after {WARMUP} warm-up)")
    args = parser.parse_args()

    data = {"recipe": args.recipe, "seq_len": args.seq_len, "batch_size": args.batch_size, "fim_rate": 0.9}
    results = {
        "device": f"{platform.machine()} x{torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "lightning": L.__version__,
        "args": vars(args),
        "models": {},
    }
    for preset in args.presets:
        r = results["models"][preset] = benchmark(preset, data, args.steps)
        arms = r["arms"]
        print(f"{preset}: Lightning {arms['lightning']['tokens_per_s']:.0f} tok/s, bare PyTorch "
              f"{arms['pytorch']['tokens_per_s']:.0f} tok/s (overhead {r['lightning_overhead']:+.1%}; goal <= 5%), "
              f"transformers {arms['transformers']['tokens_per_s']:.0f} tok/s "
              f"(ours {r['speedup_vs_transformers']:.2f}x; goal >= 1.2x); "
              f"Lightning {arms['lightning']['flop_per_s'] / 1e9:.1f} GFLOP/s = "
              f"{arms['lightning']['fraction_of_matmul_ceiling']:.0%} of the matmul ceiling", flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"saved {RESULTS}")


if __name__ == "__main__":
    main()
