import pytest
import yaml

from lit_codellama.data import load_recipe
from lit_codellama.data.recipe import builtin_recipes
from lit_codellama.errors import ConfigError


@pytest.mark.parametrize(
    "name, weights",
    [
        ("default", {"code": 0.85, "nl_about_code": 0.08, "nl": 0.07}),
        ("local", {"code": 0.85, "nl_about_code": 0.08, "nl": 0.07}),
        ("code", {"code": 0.85, "nl_about_code": 0.08, "nl": 0.07}),
        ("python", {"python": 0.75, "code": 0.10, "nl_about_code": 0.10, "nl": 0.05}),
        ("the-stack-smol", {"python": 0.75, "code": 0.10, "nl_about_code": 0.10, "nl": 0.05}),
    ],
)
def test_shipped_recipes_carry_the_papers_mixtures(name, weights):
    assert load_recipe(name).weights == pytest.approx(weights)


def test_weights_are_relative():
    recipe = load_recipe("default")
    doubled = recipe.replace(sources=[{**s, "weight": 2 * s["weight"]} for s in recipe.to_dict()["sources"]])
    assert doubled.weights == pytest.approx(recipe.weights)


def test_fingerprint_depends_on_every_setting():
    recipe = load_recipe("default")
    assert recipe.fingerprint() == load_recipe("default").fingerprint()
    assert recipe.fingerprint() != recipe.replace(max_bytes=1000).fingerprint()
    assert recipe.fingerprint() != recipe.replace(dedup={"threshold": 0.7}).fingerprint()


def test_unknown_field_names_the_file_and_the_field(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(
        "name: r\nsources:\n  - name: a\n    weight: 1\n    inputs: [{kind: files, roots: [.], globs: ['*']}]\n"
    )
    with pytest.raises(ConfigError, match=r"r\.yaml.*sources\[0\].*inputs\[0\].*unknown field.*globs"):
        load_recipe(path)


@pytest.mark.parametrize(
    "sources, message",
    [
        ("[{name: a, weight: 0, inputs: [{roots: [.]}]}]", "weight must be > 0"),
        ("[{name: a, weight: 1, inputs: [{kind: hub}]}]", "hub input needs path"),
        ("[{name: a, weight: 1, inputs: [{kind: ftp, roots: [.]}]}]", "must be one of"),
        ("[]", "needs at least one source"),
    ],
)
def test_invalid_recipes_are_rejected_with_the_reason(tmp_path, sources, message):
    path = tmp_path / "r.yaml"
    path.write_text(f"name: r\nsources: {sources}\n")
    with pytest.raises(ConfigError, match=message):
        load_recipe(path)


def test_unknown_recipe_name_lists_the_built_in_ones():
    with pytest.raises(ConfigError, match=r"neither a YAML file nor one of the built-in recipes \[.*'default'"):
        load_recipe("no-such-recipe")


def test_recipe_names_and_paths_resolve_against_the_current_directory(tmp_path, monkeypatch):
    (tmp_path / "configs" / "data").mkdir(parents=True)
    mine = yaml.safe_load((builtin_recipes()["default"]).read_text()) | {"name": "mine"}
    (tmp_path / "configs" / "data" / "mine.yaml").write_text(yaml.safe_dump(mine))
    monkeypatch.chdir(tmp_path)
    assert load_recipe("mine").name == "mine"  # the checkout run from: a built-in name
    assert load_recipe("configs/data/mine.yaml").name == "mine"
    assert load_recipe("default").name == "default"  # the package's own still found by name
