import json

import pytest

from lit_codellama.data.cli import main


def test_build_then_stats(tmp_path, tree, tokenizer_path, recipe_file, capsys):
    recipe = recipe_file(tmp_path / "r.yaml", tree, tokenizer_path)
    assert main(["build", "--recipe", str(recipe), "--out", str(tmp_path / "c"), "--num-proc", "1"]) == 0
    built = capsys.readouterr().out
    assert f"corpus r at {tmp_path / 'c'}" in built and "mix (tokens), target -> achieved" in built
    assert "humaneval" in built and "mbpp                 not checked" in built
    assert main(["stats", str(tmp_path / "c")]) == 0
    assert capsys.readouterr().out == built
    assert main(["stats", "--json", str(tmp_path / "c")]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "r"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["build", "--recipe", "nope"], "neither a YAML file nor one of the built-in recipes"),
        (["stats", "/nonexistent"], "is not a built corpus"),
    ],
)
def test_mistakes_exit_with_one_clear_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
