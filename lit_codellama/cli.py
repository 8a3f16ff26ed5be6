"""`python -m lit_codellama <command>`: one entry point that hands each command to the module that owns it."""

from __future__ import annotations

import importlib
import sys

from lit_codellama.errors import LitCodeLlamaError

# command -> (module with a `main(argv) -> int`, one-line help)
COMMANDS = {
    "fit": ("lit_codellama.training.cli", "train a model (LightningCLI; --config configs/train/...yaml)"),
    "validate": ("lit_codellama.training.cli", "validate a checkpoint (LightningCLI)"),
    "data": ("lit_codellama.data.cli", "build a corpus, tokenizer and tokenized shards from a recipe"),
    "eval": ("lit_codellama.evaluation.cli", "HumanEval, MBPP, MultiPL-E, infilling, perplexity, long context"),
    "generate": ("lit_codellama.generate", "generate or infill from a checkpoint"),
    "chat": ("lit_codellama.chat", "chat with an Instruct checkpoint (Llama 2 chat format, answers streamed)"),
    "tokenizer": ("lit_codellama.tokenizer", "train or inspect a sentencepiece tokenizer"),
    "convert": ("lit_codellama.convert", "convert a checkpoint to our format or to a Hugging Face directory"),
    "self-instruct": ("lit_codellama.instruct.self_instruct", "self-instruct data with execution feedback"),
    "study": ("lit_codellama.studies.cli", "run an ablation study: a name in ./ablations/ or a study script's path"),
}

USAGE = "usage: python -m lit_codellama <command> [options]\n\ncommands:\n" + "\n".join(
    f"  {name:<14} {help_}" for name, (_, help_) in COMMANDS.items()
) + "\n\nRun `python -m lit_codellama <command> --help` for a command's options."


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    try:
        # LightningCLI subcommands (fit, validate) keep their name; other modules take the remaining arguments.
        return module.main([command, *rest] if command in ("fit", "validate") else rest) or 0
    except LitCodeLlamaError as error:  # bad input: the message says what and where; a traceback would bury it
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"error: {command} interrupted (Ctrl-C)", file=sys.stderr)
        return 130
