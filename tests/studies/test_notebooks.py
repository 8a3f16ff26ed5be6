"""The notebooks' headless commands, exactly as the README and the notebooks print them, run on freshly produced
tiny results (conftest's `results`) laid out where the commands look: ablations/results/<study>."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
COMMAND = re.compile(r"RESULTS_DIR=(\S+) jupyter nbconvert --to notebook --execute (notebooks/\S+\.ipynb)")
FIGURE_PREFIX = {"fim_rate": "fim", "rope_base": "rope", "long_context": "long_context"}  # by study


def documented_commands() -> list[str]:
    texts = [(ROOT / "README.md").read_text()]
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        texts += ["".join(cell["source"]) for cell in json.loads(notebook.read_text())["cells"]]
    return sorted({match.group(0) for text in texts for match in COMMAND.finditer(text)})


def test_the_readme_documents_a_notebook_command():
    readme = COMMAND.findall((ROOT / "README.md").read_text())
    assert ("ablations/results/fim_rate", "notebooks/fim_ablation.ipynb") in readme


def test_every_notebook_documents_its_headless_command():
    documented = {COMMAND.fullmatch(command).group(2) for command in documented_commands()}
    assert documented == {f"notebooks/{path.name}" for path in (ROOT / "notebooks").glob("*.ipynb")}


def test_committed_notebooks_show_the_committed_results():
    """Each notebook is committed executed on its study's committed results, so it renders where the repository is
    browsed: every cell ran, none failed, and every claim of the committed study.json is in its output."""
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
        study = next(COMMAND.fullmatch(c).group(1) for c in documented_commands() if notebook.name in c)
        outputs = [o for c in cells for o in c["outputs"]]
        assert all(c["execution_count"] for c in cells), f"{notebook.name}: not every cell was executed"
        assert not [o for o in outputs if o["output_type"] == "error"], f"{notebook.name}: a cell failed"
        shown = json.dumps(outputs)
        for claim in json.loads((ROOT / study / "study.json").read_text())["claims"]:
            assert json.dumps(claim["text"])[1:-1] in shown, f"{notebook.name}: claim {claim['text']!r} not shown"


def execute(command: str, cwd: Path, **env: str) -> list[dict]:
    """Run a documented command in `cwd` (a copy of the repository's layout); the executed notebook's outputs."""
    environment = {k: v for k, v in os.environ.items() if k not in ("RESULTS_DIR", "SCALING_DIR")}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    done = subprocess.run(command, shell=True, cwd=cwd, env={**environment, **env}, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    notebook = COMMAND.search(command).group(2)
    executed = json.loads((cwd / notebook.replace(".ipynb", ".nbconvert.ipynb")).read_text())
    outputs = [o for cell in executed["cells"] for o in cell.get("outputs", [])]
    assert outputs and not [o for o in outputs if o["output_type"] == "error"]
    return outputs


def text_of(outputs: list[dict]) -> str:
    return "".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", "")) for o in outputs)


@pytest.mark.slow
@pytest.mark.parametrize("command", documented_commands())
def test_documented_notebook_command_runs_from_the_repository_root(command, results, tmp_path):
    """In a copy of the notebooks, with a tiny study's results where the command expects the study's; the optional
    scaling results are absent."""
    results_dir, notebook = COMMAND.fullmatch(command).groups()
    study = Path(results_dir).name
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    shutil.copytree(results[study], tmp_path / results_dir, ignore=shutil.ignore_patterns("figures"))
    outputs = execute(command, tmp_path)
    claims = json.loads((tmp_path / results_dir / "study.json").read_text())["claims"]
    shown = text_of(outputs)
    assert all(claim["text"][:40] in shown for claim in claims), "the claims table lists every claim"
    figures = sorted((tmp_path / results_dir / "figures").glob("*.png"))
    assert figures and all(f.stat().st_size > 10_000 for f in figures)
    assert (tmp_path / results_dir / "figures" / f"{FIGURE_PREFIX[study]}_claims.png") in figures
    if study == "fim_rate":
        assert "no scaling results in" in shown
        assert not (tmp_path / results_dir / "figures" / "fim_scaling.png").exists()


@pytest.mark.slow
def test_fim_notebook_plots_scaling_results_when_present(results, tmp_path):
    """The tiny FIM study's claims pair FIM 0.9 with FIM 0 at one size: a scaling result with a single size."""
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    fim = shutil.copytree(results["fim_rate"], tmp_path / "fim_rate", ignore=shutil.ignore_patterns("figures"))
    execute(f"RESULTS_DIR={fim} jupyter nbconvert --to notebook --execute notebooks/fim_ablation.ipynb", tmp_path,
            SCALING_DIR=str(fim))
    assert (fim / "figures" / "fim_scaling.png").stat().st_size > 10_000
