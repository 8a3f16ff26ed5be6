import hashlib
import io
import tarfile

import pytest
import yaml

from lit_codellama.data import DataError, build_corpus, load_recipe
from lit_codellama.data.archives import unpacked
from lit_codellama.data.cli import main as data_main
from lit_codellama.data.corpus import documents_sha256
from lit_codellama.data.recipe import Archive


def fake_sdist(path, tree):
    """`tree` as an sdist would hold it: one top directory, `fakepkg-0.1/`."""
    with tarfile.open(path, "w:gz") as t:
        t.add(tree, arcname="fakepkg-0.1")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def archive_recipe(path, sha256, tokenizer):
    roots = ["{archives}"]
    recipe = {
        "name": "pinned",
        "seed": 7,
        "archives": [{"name": "fakepkg", "version": "0.1", "sha256": sha256}],
        "sources": [
            {"name": "code", "weight": 0.6, "inputs": [{"kind": "files", "roots": roots, "include": ["*.py", "*.c"]}]},
            {"name": "nl_about_code", "weight": 0.25, "inputs": [{"kind": "files", "roots": roots, "include": ["*.md"]}]},
            {"name": "nl", "weight": 0.15, "inputs": [{"kind": "files", "roots": roots, "include": ["*.txt"]}]},
        ],
        "tokenizer": {"path": str(tokenizer)},
    }
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_a_pinned_recipe_builds_the_same_corpus_on_two_fresh_machines(tmp_path, tree, tokenizer_path, monkeypatch, capsys):
    sha = fake_sdist(tmp_path / "fakepkg-0.1.tar.gz", tree)
    recipe = archive_recipe(tmp_path / "pinned.yaml", sha, tokenizer_path)
    built = []
    for machine in ("a", "b"):  # each with its own archive cache, holding the fetched sdist
        cache = tmp_path / machine / "archives"
        cache.mkdir(parents=True)
        (cache / "fakepkg-0.1.tar.gz").write_bytes((tmp_path / "fakepkg-0.1.tar.gz").read_bytes())
        monkeypatch.setenv("LIT_CODELLAMA_ARCHIVES", str(cache))
        assert data_main(["build", "--recipe", str(recipe), "--out", str(tmp_path / machine / "corpus"), "--num-proc", "1"]) == 0
        built.append(build_corpus(load_recipe(recipe), tmp_path / machine / "corpus"))
    a, b = built
    assert a.report["documents"] > 50 and a.path != b.path
    assert a.sha256 == b.sha256 == documents_sha256(a.documents["text"]) == a.report["sha256"]
    assert a.sha256 in capsys.readouterr().out
    assert all(path.startswith(str(tmp_path / "a" / "archives" / "fakepkg-0.1")) for path in a.documents["path"])


def test_the_corpus_sha256_covers_every_text_and_where_each_ends():
    assert documents_sha256(["ab", "c"]) == hashlib.sha256(b"ab\0c\0").hexdigest()
    assert documents_sha256(["ab", "c"]) != documents_sha256(["a", "bc"])


def test_an_archive_the_registry_cannot_serve_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # as without network: pip finds nothing
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    archive = Archive("lit-codellama-no-such-package", "0.1", "0" * 64)
    with pytest.raises(DataError, match=r"could not fetch the sdist lit-codellama-no-such-package==0.1 .*--recipe local"):
        unpacked([archive], tmp_path / "cache")


def test_a_cached_archive_that_does_not_match_its_pin_is_not_used(tmp_path, tree, monkeypatch):
    sha = fake_sdist(tmp_path / "fakepkg-0.1.tar.gz", tree)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "fakepkg-0.1.tar.gz").write_bytes(io.BytesIO(b"tampered").getvalue())
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    with pytest.raises(DataError, match="could not fetch the sdist fakepkg==0.1"):
        unpacked([Archive("fakepkg", "0.1", sha)], cache)


@pytest.mark.slow
def test_the_default_recipes_sdists_are_fetched_from_the_registry_and_match_their_pins(tmp_path):
    (smallest,) = [a for a in load_recipe("default").archives if a.name == "simplejson"]
    (unpacked_dir,) = unpacked([smallest], tmp_path)
    assert (unpacked_dir / f"simplejson-{smallest.version}" / "setup.py").is_file()
