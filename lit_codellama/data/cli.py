"""`python -m lit_codellama data build|stats`: build a corpus from a recipe, or describe a built one."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from lit_codellama.data.archives import unpacked
from lit_codellama.data.corpus import build_corpus, default_corpus_dir, load_corpus
from lit_codellama.data.recipe import builtin_recipes, load_recipe
from lit_codellama.errors import LitCodeLlamaError
from lit_codellama.tokenizer import TokenizerError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lit_codellama data",
        description="Code Llama's data recipe: collect, deduplicate, decontaminate, tokenize and mix a code corpus.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser(
        "build",
        help="build a corpus (documents, tokenizer, tokenized shards, manifest, report) from a recipe",
        description="Build a corpus; building the same recipe into the same --out again is a cache hit.",
    )
    recipes = ", ".join(sorted(builtin_recipes()))
    build.add_argument("--recipe", default="default", help=f"a recipe YAML, or a built-in name ({recipes})")
    build.add_argument(
        "--out",
        type=Path,
        help="output dir (default: $LIT_CODELLAMA_DATA or ~/.cache/lit_codellama/corpora/<name>-<fingerprint>)",
    )
    build.add_argument("--max-bytes", type=int, help="override the recipe's cap on the text read, in bytes")
    build.add_argument("--num-proc", type=int, help="worker processes (default: all cores)")
    fetch = commands.add_parser(
        "fetch",
        help="fetch and unpack a recipe's pinned sdists into the archive cache (what a build does first)",
        description="Fetch a recipe's pinned sdists with pip, check their SHA-256 and unpack them into "
        "$LIT_CODELLAMA_ARCHIVES (default ~/.cache/lit_codellama/archives).",
    )
    fetch.add_argument("--recipe", default="default", help=f"a recipe YAML, or a built-in name ({recipes})")
    stats = commands.add_parser("stats", help="print a built corpus's report")
    stats.add_argument("corpus", type=Path, help="a dir written by `data build`")
    stats.add_argument("--json", action="store_true", help="print the full report as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            overrides = {} if args.max_bytes is None else {"max_bytes": args.max_bytes}
            recipe = load_recipe(args.recipe, **overrides)
            corpus = build_corpus(recipe, args.out or default_corpus_dir(recipe), args.num_proc)
            print(summary(corpus.report, corpus.path))
        elif args.command == "fetch":
            for path in unpacked(load_recipe(args.recipe).archives):
                print(path)
        else:
            corpus = load_corpus(args.corpus)
            print(json.dumps(corpus.report, indent=2) if args.json else summary(corpus.report, corpus.path))
    except (LitCodeLlamaError, TokenizerError, FileNotFoundError) as e:
        parser.error(str(e))
    return 0


def _pin(report: dict[str, Any]) -> str:
    """How the corpus sha256 compares with the one its recipe pins (nothing when it pins none)."""
    pinned = report["recipe"].get("sha256")
    if not pinned:
        return ""
    return " (the recipe's pinned sha256)" if pinned == report.get("sha256") else f" (NOT the recipe's pinned {pinned})"


def summary(report: dict[str, Any], path: Path) -> str:
    """A human-readable account of a corpus report."""
    mix = report["mix"]
    lines = [
        f"corpus {report['name']} at {path} (recipe fingerprint {report['fingerprint'][:12]})",
        f"  sha256 {report.get('sha256', 'not recorded (built before corpus sha256s)')}{_pin(report)}",
        (
            f"  {report['documents']:,} documents, {report['tokens']:,} tokens, {report['bytes']:,} bytes, "
            f"vocab {report['vocab_size']:,}; built in {report['seconds']['total']:.0f} s"
        ),
        f"  mix (tokens), target -> achieved; limited by {mix['limited_by']!r}:",
        *(
            f"    {s:<20} {mix['target'][s]:6.1%} -> {mix['achieved'][s]:6.1%}  ({mix['tokens'][s]:,} tokens)"
            for s in mix["target"]
        ),
        "  sources (candidate files, files read, skipped):",
        *(
            f"    {s:<20} {v['candidates']:,} candidates, {v['read']:,} read, skipped {v['skipped'] or 'none'}"
            + (f", missing roots {v['missing_roots']}" if v["missing_roots"] else "")
            for s, v in report["sources"].items()
        ),
        f"  removed (of {report['collected_documents']:,} documents collected):",
        *(
            f"    {step:<20} {r['documents']:,} documents, {r['tokens']:,} tokens, {r['bytes']:,} bytes"
            for step, r in report["removed"].items()
        ),
        "  decontamination:",
        *(f"    {bench:<20} {status}" for bench, status in report["decontamination"].items()),
        "  languages (documents, tokens): "
        + ", ".join(f"{lang} {v['documents']:,}/{v['tokens']:,}" for lang, v in report["languages"].items()),
        "  seconds: "
        + ", ".join(f"{step} {s:.1f}" for step, s in report["seconds"].items())
        + (f"; dedup {report['dedup_docs_per_s']:,.0f} documents/s" if report["dedup_docs_per_s"] else ""),
    ]
    return "\n".join(lines)
