"""Does the data pipeline keep up with training? Tokens/s that CodeDataModule delivers with FIM on, against the
training tokens/s of the ~10M preset on this machine (goal: at least 20x headroom, so the loader never stalls a
step), plus the build time of the built-in default corpus and its dedup rate.

    python benchmarks/data_throughput.py [--max-bytes 20000000] [--seq-len 256] [--batch-size 8]

The corpus is built fresh into a temporary dir (not the cache) so that the build time is real. Loader and
training steps are timed interleaved (loader, train, loader, train, ...) and the medians are reported, so
background load affects both alike. Results are printed and saved to benchmarks/results/data_throughput.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lit_codellama import Llama, ModelConfig
from lit_codellama.data import CodeDataModule, build_corpus, load_recipe

RESULTS = Path(__file__).parent / "results" / "data_throughput.json"


def loader_tokens_per_s(dm: CodeDataModule, batches: int) -> float:
    it = iter(dm.train_dataloader())
    next(it)  # opens the corpus and the tokenizer
    start = time.perf_counter()
    for batch in itertools.islice(it, batches):
        pass
    return batches * batch["input_ids"].numel() / (time.perf_counter() - start)


def training_tokens_per_s(model: Llama, optimizer: torch.optim.Optimizer, batch: dict, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        logits = model(batch["input_ids"])
        loss = F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return steps * batch["input_ids"].numel() / (time.perf_counter() - start)


def fim_share(dm: CodeDataModule, batches: int) -> float:
    """Share of the samples delivered (each starts with <s>) that are FIM samples (each has one <PRE>)."""
    tok, samples, fim = dm.tokenizer, 0, 0
    for batch in itertools.islice(dm.train_dataloader(), batches):
        ids = batch["input_ids"]
        samples += int((ids == tok.bos_id).sum())
        fim += int((ids == tok.prefix_id).sum())
    return fim / samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-bytes", type=int, default=None, help="cap of the default recipe (default: its own)")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--fim-rate", type=float, default=0.9)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    overrides = {} if args.max_bytes is None else {"max_bytes": args.max_bytes}
    recipe = load_recipe("default", **overrides)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        corpus = build_corpus(recipe, Path(tmp) / "default")
        build_s = time.perf_counter() - start
        dm = CodeDataModule(str(corpus.path), seq_len=args.seq_len, batch_size=args.batch_size, fim_rate=args.fim_rate)
        dm.setup()
        cfg = ModelConfig.from_name("cl-10m", vocab_size=dm.tokenizer.vocab_size, block_size=args.seq_len)
        model = Llama(cfg)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1)
        batch = next(iter(dm.train_dataloader()))
        training_tokens_per_s(model, optimizer, batch, steps=2)  # warm-up
        loader, train = [], []
        for _ in range(args.rounds):
            loader.append(loader_tokens_per_s(dm, batches=50))
            train.append(training_tokens_per_s(model, optimizer, batch, steps=3))
        share = fim_share(dm, batches=200)
        report = corpus.report

    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
        f"{torch.get_num_threads()}",
        "corpus": {
            "recipe": recipe.name,
            "max_bytes": recipe.max_bytes,
            "documents": report["documents"],
            "tokens": report["tokens"],
            "build_s": round(build_s, 1),
            "seconds": report["seconds"],
            "dedup_docs_per_s": round(report["dedup_docs_per_s"], 1),
        },
        "loader": {
            "seq_len": args.seq_len,
            "batch_size": args.batch_size,
            "fim_rate": args.fim_rate,
            "fim_level": "document",
            "num_workers": 0,
            "fim_share_delivered": round(share, 3),
            "tokens_per_s": round(statistics.median(loader)),
        },
        "training": {
            "model": "cl-10m",
            "params": sum(p.numel() for p in model.parameters()),
            "tokens_per_s": round(statistics.median(train)),
        },
    }
    result["headroom"] = round(result["loader"]["tokens_per_s"] / result["training"]["tokens_per_s"], 1)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    verdict = "meets" if result["headroom"] >= 20 else "MISSES"
    print(
        f"loader {result['loader']['tokens_per_s']:,} tok/s vs cl-10m training {result['training']['tokens_per_s']:,}"
        f" tok/s: {result['headroom']}x headroom ({verdict} the 20x goal)"
    )


if __name__ == "__main__":
    main()
