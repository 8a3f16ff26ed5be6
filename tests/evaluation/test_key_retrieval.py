import pytest

from lit_codellama.evaluation.key_retrieval import QUESTION, answer, key_retrieval_accuracy, key_retrieval_prompts


def test_prompts_fit_the_length_and_hide_the_key_at_its_position(tokenizer, stdlib_texts):
    prompts = key_retrieval_prompts(tokenizer, stdlib_texts, [128, 512], [0.0, 0.2, 0.4], n_per_cell=3)
    assert len(prompts) == 2 * 3 * 3
    for p in prompts:
        assert p.n_tokens <= p.length and p.n_tokens >= 0.8 * p.length
        assert p.prompt.endswith(QUESTION)
        definition = f"def my_function() -> int:\n    return {p.key}\n"
        assert p.prompt.count(definition) == 1
        where = p.prompt.index(definition) / len(p.prompt)
        assert where == pytest.approx(p.position, abs=0.1)
    assert prompts == key_retrieval_prompts(tokenizer, stdlib_texts, [128, 512], [0.0, 0.2, 0.4], n_per_cell=3)


def test_answer_is_the_integer_the_completion_starts_with():
    assert answer(" 4213\n") == 4213 and answer("-7)") == -7
    assert answer("my_function()") is None


def test_accuracy_per_cell(tiny_model, tokenizer, stdlib_texts, tmp_path):
    summary = key_retrieval_accuracy(tiny_model, tokenizer, [64, 128], [0.0, 0.4], n_per_cell=2,
                                     filler_texts=stdlib_texts, out_dir=tmp_path)
    assert [(c["length"], c["position"], c["n"]) for c in summary["cells"]] == [
        (64, 0.0, 2), (64, 0.4, 2), (128, 0.0, 2), (128, 0.4, 2)]
    assert summary["accuracy"] == 0.0  # an untrained model does not find the key
    assert (tmp_path / "results.jsonl").read_text().count('"correct": false') == 8
