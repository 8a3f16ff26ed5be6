"""Where the time goes in our Llama and in transformers' LlamaForCausalLM (same shape, same weights): what bounds
the ours/transformers ratios that `model_throughput.py` measures.

    OMP_NUM_THREADS=2 python benchmarks/profile_vs_transformers.py [--preset cl-10m] [--precisions bf16-mixed]

For each precision, torch.profiler records (a) training steps (forward, backward, AdamW; 8 x 256 by default) and
(b) batch-1 cached greedy generation (a 64-token prompt, 32 new tokens), each model's after warm-up calls, the two
models alternating. Reported per step (training) or per new token (generation): wall time, unprofiled wall time
(the profiler adds a little per op), the shares of the self CPU time that matmul kernels, attention (SDPA) and the
optimizer take, the time outside any aten op (Python, module calls, framework: wall minus the ops' self time), the
number of aten ops called, and the top ops by self CPU time. Printed, and saved as
benchmarks/results/profile_vs_transformers.json with the CPU model, its bf16 flags and the load average.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from model_throughput import DTYPES, build_pair, forward_hf, forward_ours, train_step_fn
from torch.profiler import ProfilerActivity, profile

from lit_codellama.generate import SamplingConfig, generate
from lit_codellama.precision import cpu_info

RESULTS = Path(__file__).parent / "results" / "profile_vs_transformers.json"
# Where an aten op's self time is spent: the first category whose pattern matches the op or one of its callers
# (AdamW's elementwise ops run under torch's "Optimizer.step#AdamW.step"; SDPA's helpers under SDPA), else "other".
CATEGORIES = {
    "optimizer": re.compile(r"^Optimizer\.step"),
    "attention": re.compile(r"scaled_dot_product|flash_attention"),
    "matmul": re.compile(r"^aten::(mm|addmm|bmm|baddbmm|matmul|linear|mv|addmv)$|mkldnn"),
}


def category(event) -> str:
    names = [event.name]
    while event.cpu_parent is not None:
        event = event.cpu_parent
        names.append(event.name)
    return next((c for c, pattern in CATEGORIES.items() if any(pattern.search(n) for n in names)), "other")


def profiled(fn: Callable[[], object], calls: int, per: int, top: int) -> dict:
    """`calls` profiled calls of `fn`, reported per one of each call's `per` steps (training steps or new tokens)."""
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            fn()
    wall = time.perf_counter() - start
    per *= calls
    ops = [e for e in prof.events() if e.name.startswith("aten::")]
    in_ops = sum(e.self_cpu_time_total for e in ops) / 1e6
    shares = dict.fromkeys((*CATEGORIES, "other"), 0.0)
    by_op: dict[str, list[float]] = {}
    for e in ops:
        shares[category(e)] += e.self_cpu_time_total / 1e6 / in_ops
        seconds_calls = by_op.setdefault(e.name, [0.0, 0])
        seconds_calls[0] += e.self_cpu_time_total / 1e6
        seconds_calls[1] += 1
    ranked = sorted(by_op.items(), key=lambda item: -item[1][0])[:top]
    return {
        "wall_s": wall / per,
        "in_aten_ops_s": in_ops / per,
        "outside_ops_share": max(0.0, 1 - in_ops / wall),  # Python, module calls, autograd bookkeeping
        "shares_of_op_time": shares,
        "aten_ops": len(ops) / per,
        "top_ops": [{"op": op, "self_s": s / per, "share": s / in_ops, "calls": n / per} for op, (s, n) in ranked],
    }


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(runs: dict[str, Callable[[], object]], per: int, args) -> dict:
    """Warm both up; time `args.repeats` unprofiled calls of each, alternating, so background load reaches both
    alike (the speedup is the median of each round's ratio); then profile `args.profiled` calls of each."""
    for run in [*runs.values(), *runs.values()]:
        run()
    times = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            times[name].append(seconds(run) / per)
    result = {name: {"unprofiled_wall_s": statistics.median(times[name]), "unprofiled_wall_s_all": times[name],
                     **profiled(run, args.profiled, per, args.top)} for name, run in runs.items()}
    result["ours_speedup"] = statistics.median(hf / ours for hf, ours in zip(times["transformers"], times["ours"]))
    return result


def training_runs(models, precision: str, args) -> dict:
    batch = torch.randint(0, models["ours"].config.vocab_size, (args.batch_size, args.seq_len))
    forwards = {"ours": forward_ours, "transformers": forward_hf}
    return {name: train_step_fn(model, forwards[name], batch, torch.optim.AdamW(model.parameters(), lr=1e-4),
                                precision, "cpu")
            for name, model in models.items()}


def generation_runs(models, precision: str, args) -> dict:
    ours, hf = (copy.deepcopy(models[name]).to(DTYPES[precision]) for name in ("ours", "transformers"))
    prompt = torch.randint(3, ours.config.vocab_size, (1, args.prompt_len))
    n = args.new_tokens

    def run_ours():
        return generate(ours, prompt.tolist(), SamplingConfig(max_new_tokens=n))

    @torch.inference_mode()
    def run_hf():
        return hf.generate(prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0, eos_token_id=None)

    return {"ours": run_ours, "transformers": run_hf}


def show(what: str, result: dict) -> None:
    print(f"{what}: ours {result['ours_speedup']:.2f}x transformers (unprofiled)")
    for name in ("ours", "transformers"):
        r = result[name]
        shares = ", ".join(f"{k} {v:.0%}" for k, v in r["shares_of_op_time"].items())
        print(f"  {name:12s} {r['unprofiled_wall_s'] * 1e3:8.2f} ms ({r['wall_s'] * 1e3:.2f} profiled), "
              f"{r['aten_ops']:.0f} aten ops, {r['outside_ops_share']:.0%} outside ops; of op time: {shares}")
        print("    top: " + "; ".join(f"{t['op']} {t['share']:.0%} ({t['calls']:.0f}x)" for t in r["top_ops"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cl-10m")
    parser.add_argument("--precisions", nargs="+", default=["bf16-mixed"], choices=sorted(DTYPES))
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="unprofiled calls of each, alternating")
    parser.add_argument("--profiled", type=int, default=2, help="profiled calls of each")
    parser.add_argument("--top", type=int, default=10, help="ops listed by self CPU time")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    report = {"cpu": cpu_info(), "threads": torch.get_num_threads(), "torch": torch.__version__,
              "args": {k: str(v) for k, v in vars(args).items()}, "load_average_at_start": os.getloadavg(),
              "training": {}, "generation": {}}
    print(f"{cpu_info()['model']} x{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    models = build_pair(args.preset, "cpu", args.vocab_size)
    for precision in args.precisions:
        what = f"{args.preset} training step {args.batch_size}x{args.seq_len} {precision}"
        report["training"][precision] = result = compare(training_runs(models, precision, args), 1, args)
        show(what, result)
        what = f"{args.preset} batch-1 generation, {args.prompt_len}-token prompt, per new token, {precision}"
        report["generation"][precision] = result = compare(generation_runs(models, precision, args), args.new_tokens, args)
        show(what, result)
    report["load_average_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"load average {report['load_average_at_start'][0]:.1f} -> {report['load_average_at_end'][0]:.1f}; "
          f"saved {args.out}")


if __name__ == "__main__":
    main()
