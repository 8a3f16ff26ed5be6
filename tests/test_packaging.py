import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).parents[1]


def test_environment_yml_declares_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["dev"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda_reqs = {str(Requirement(r)) for r in pip_section if not r.startswith("-e")}
    assert conda_reqs == {str(Requirement(r)) for r in declared}


def test_ci_runs_exactly_the_readme_test_command():
    [command] = [line for line in (ROOT / ".ci/run").read_text().splitlines() if "pytest" in line]
    assert f"\n{command}\n" in (ROOT / "README.md").read_text()
