"""The notebooks' headless commands, exactly as the README and the notebooks print them, on the committed results."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
COMMAND = re.compile(r"RESULTS_DIR=(\S+) jupyter nbconvert --to notebook --execute (notebooks/\S+\.ipynb)")


def documented_commands() -> list[str]:
    texts = [(ROOT / "README.md").read_text()]
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        texts += ["".join(cell["source"]) for cell in json.loads(notebook.read_text())["cells"]]
    return sorted({match.group(0) for text in texts for match in COMMAND.finditer(text)})


def test_the_readme_documents_a_notebook_command():
    readme = COMMAND.findall((ROOT / "README.md").read_text())
    assert ("ablations/results/fim_rate", "notebooks/fim_ablation.ipynb") in readme


@pytest.mark.slow
@pytest.mark.parametrize("command", documented_commands())
def test_documented_notebook_command_runs_from_the_repository_root(command, tmp_path):
    """In a copy of the repository's notebooks and committed results, so the checkout's figures stay as they are."""
    results_dir, notebook = COMMAND.fullmatch(command).groups()
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    shutil.copytree(ROOT / results_dir, tmp_path / results_dir, ignore=shutil.ignore_patterns("figures"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    executed = json.loads((tmp_path / notebook.replace(".ipynb", ".nbconvert.ipynb")).read_text())
    outputs = [o for cell in executed["cells"] for o in cell.get("outputs", [])]
    assert outputs and not [o for o in outputs if o["output_type"] == "error"]
    figures = sorted((tmp_path / results_dir / "figures").glob("*.png"))
    assert figures and all(f.stat().st_size > 10_000 for f in figures)
