"""Does `model.compile: true` pay through Lightning, compile time counted? The real `fit` path (CodeLlamaLM, the
CLI's callbacks, CodeDataModule with FIM) with compile off and on, same data, steps and precision.

    OMP_NUM_THREADS=2 python benchmarks/train_compile.py --precision bf16-mixed [--preset cl-10m] [--steps 6]

Paired design, for a shared machine whose speed drifts by tens of percent within minutes: the two arms' `fit`s run in
two processes that take turns, one training step each (eager, compiled, eager, ...), never at the same time. A step
is timed from the end of the previous one (data loading, hooks, logging and the optimizer step included), waiting
for the other arm excluded. Steady state is the median step after the first `--warmup` steps; the speedup is the
median over steps of eager/compiled. The compile overhead is what the compiled run's first steps cost beyond its
steady state, less the same for the eager run (oneDNN's first-call kernel selection, which both pay): torch.compile
traces and builds the forward and backward in its first step, in its own process (TORCHINDUCTOR_COMPILE_THREADS=1:
no worker pool compiling on while the eager arm steps). Inductor's cache starts empty (a fresh TORCHINDUCTOR_CACHE_DIR),
so round 1 pays a cold compile and later rounds (new processes) a warm-cache one.
Break-even: the steps after which the compiled run has caught up, overhead / (eager step - compiled step); none when
compiled steps are not faster. Results: benchmarks/results/train_compile_<precision>.json (after every round).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import queue
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from train_throughput import fit_config

from lit_codellama.precision import cpu_info
from lit_codellama.training import train

RESULTS = Path(__file__).parent / "results"
ARMS = {"eager": False, "compiled": True}  # the first arm takes the first turn
TURN_TIMEOUT_S = 900  # the other arm died: fail rather than wait forever


class TakeTurns(L.Callback):
    """Alternates training steps with another process's `fit`: waits for `mine`, hands over with `theirs`."""

    def __init__(self, mine, theirs, ready) -> None:
        self.mine, self.theirs, self.ready = mine, theirs, ready
        self.times: list[float] = []

    def _wait(self) -> None:
        if not self.mine.acquire(timeout=TURN_TIMEOUT_S):
            raise TimeoutError("the other arm of the benchmark stopped taking turns")
        self._resume = time.perf_counter()

    def on_train_start(self, trainer, pl_module) -> None:
        self.ready.wait(TURN_TIMEOUT_S)  # both set up, so neither's setup overlaps the other's steps
        self._wait()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.times.append(time.perf_counter() - self._resume)
        self.theirs.release()
        if trainer.global_step < trainer.max_steps:
            self._wait()


def run_arm(name, compile, preset, data, max_steps, precision, mine, theirs, ready, results) -> None:
    turns = TakeTurns(mine, theirs, ready)
    with tempfile.TemporaryDirectory() as run_dir:
        overrides = {"trainer.precision": precision, "model.compile": compile}
        train(fit_config(preset, data, max_steps, run_dir), overrides=overrides, callbacks=[turns])
    results.put((name, turns.times))


def paired_step_times(preset: str, data: dict, max_steps: int, precision: str) -> dict[str, list[float]]:
    """Seconds of every training step of each arm's `fit`, the arms taking turns."""
    ctx = mp.get_context("spawn")
    turns = {name: ctx.Semaphore(0) for name in ARMS}
    ready, results = ctx.Barrier(len(ARMS)), ctx.Queue()
    names = list(ARMS)
    turns[names[0]].release()
    arms = [ctx.Process(target=run_arm, name=name, args=(name, compile, preset, data, max_steps, precision, turns[name],
                                              turns[names[1 - i]], ready, results))
            for i, (name, compile) in enumerate(ARMS.items())]
    for process in arms:
        process.start()
    try:
        times = {}
        while len(times) < len(arms):
            failed = [p.name for p in arms if p.exitcode not in (None, 0)]
            if failed:
                raise RuntimeError(f"an arm of the benchmark failed (its traceback is above): {failed}")
            with contextlib.suppress(queue.Empty):
                name, arm_times = results.get(timeout=1)
                times[name] = arm_times
    finally:  # no arm outlives a cut-short run (Lightning defers SIGTERM to a step that a waiting arm never reaches)
        for process in arms:
            process.kill()
            process.join()
    return {name: times[name] for name in ARMS}


def compare(times: dict[str, list[float]], warmup: int) -> dict:
    """One round: each arm's steady step, the compiled/eager speedup, compile overhead and break-even."""
    steady = {arm: statistics.median(t[warmup:]) for arm, t in times.items()}
    extra = {arm: sum(t[:warmup]) - warmup * steady[arm] for arm, t in times.items()}
    overhead = extra["compiled"] - extra["eager"]
    saved = steady["eager"] - steady["compiled"]
    ratios = [e / c for e, c in zip(times["eager"][warmup:], times["compiled"][warmup:])]
    return {"steady_step_s": steady, "speedup": statistics.median(ratios), "speedup_per_step": ratios,
            "compile_overhead_s": overhead, "break_even_steps": overhead / saved if saved > 0 else None,
            "step_s_all": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cl-10m")
    parser.add_argument("--precision", default="bf16-mixed", choices=("bf16-mixed", "32-true"))
    parser.add_argument("--recipe", default="default", help="data recipe (built and cached on first use)")
    parser.add_argument("--data-dir", help="a built corpus instead of --recipe")
    parser.add_argument("--val-fraction", type=float, default=0.02, help="of the corpus (a tiny one needs more)")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6, help="steady-state steps per run, after the warm-up")
    parser.add_argument("--warmup", type=int, default=2, help="first steps of each run, where compilation happens")
    parser.add_argument("--rounds", type=int, default=1, help="runs of both arms; round 1 compiles cold")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))  # e.g. `timeout`: run the finally
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-cold-")  # the arms inherit these
    # Compile in the compiled arm's own steps: a pool of compile workers would go on working during the eager arm's.
    os.environ["TORCHINDUCTOR_COMPILE_THREADS"] = "1"
    source = {"data_dir": args.data_dir} if args.data_dir else {"recipe": args.recipe}
    data = {**source, "seq_len": args.seq_len, "batch_size": args.batch_size, "fim_rate": 0.9,
            "val_fraction": args.val_fraction}
    report = {"cpu": cpu_info(), "threads": torch.get_num_threads(), "torch": torch.__version__,
              "lightning": L.__version__, "args": {k: str(v) for k, v in vars(args).items()},
              "load_average_at_start": os.getloadavg(), "rounds": []}
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"train_compile_{args.precision}.json"
    for r in range(args.rounds):
        result = compare(paired_step_times(args.preset, data, args.warmup + args.steps, args.precision), args.warmup)
        report["rounds"].append(result)
        even = result["break_even_steps"]
        print(f"round {r + 1} ({'cold' if r == 0 else 'warm'} inductor cache), {args.preset} {args.precision} "
              f"{args.batch_size}x{args.seq_len}: eager {result['steady_step_s']['eager']:.3f} s/step, compiled "
              f"{result['steady_step_s']['compiled']:.3f} s/step -> {result['speedup']:.2f}x (median of paired "
              f"steps); compile overhead {result['compile_overhead_s']:.1f} s, break-even "
              + (f"after {even:.0f} steps" if even is not None else "never (compiled steps are not faster)"),
              flush=True)
        report["load_average_at_end"] = os.getloadavg()
        out.write_text(json.dumps(report, indent=2) + "\n")  # after every round: a cut-short run keeps its rounds
    print(f"load average {report['load_average_at_start'][0]:.1f} -> {report['load_average_at_end'][0]:.1f}; saved {out}")


if __name__ == "__main__":
    main()
