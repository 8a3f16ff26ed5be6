import warnings

import pytest

from lit_codellama.data import build_corpus, load_recipe
from lit_codellama.data.cli import main as data_main


@pytest.mark.slow
def test_the_default_corpus_rebuilt_from_scratch_has_the_pinned_sha256(tmp_path, capsys):
    """The cross-machine check: CI rebuilds the built-in corpus on its own machine from the sdists that
    scripts/install.sh fetched (~70 s) and must get the sha256 that the README's results used."""
    pinned = load_recipe("default").sha256
    assert pinned is not None and len(pinned) == 64
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a different corpus warns
        assert data_main(["build", "--recipe", "default", "--out", str(tmp_path / "default")]) == 0
    assert f"sha256 {pinned} (the recipe's pinned sha256)" in capsys.readouterr().out


def test_a_corpus_other_than_the_pinned_one_warns_and_says_so(tmp_path, tree, tokenizer_path, recipe_file, capsys):
    built = build_corpus(load_recipe(recipe_file(tmp_path / "tiny.yaml", tree, tokenizer_path)), tmp_path / "a")
    other = "0" * 64
    recipe = recipe_file(tmp_path / "pinned.yaml", tree, tokenizer_path, sha256=other)
    with pytest.warns(UserWarning, match=f"sha256 {built.sha256} .* not the {other} it pins"):
        build_corpus(load_recipe(recipe), tmp_path / "b")
    with pytest.warns(UserWarning, match="not the"):  # a cache hit is checked too
        assert data_main(["build", "--recipe", str(recipe), "--out", str(tmp_path / "b")]) == 0
    assert f"(NOT the recipe's pinned {other})" in capsys.readouterr().out

    right = recipe_file(tmp_path / "right.yaml", tree, tokenizer_path, sha256=built.sha256)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_corpus(load_recipe(right), tmp_path / "c")
