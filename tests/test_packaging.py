import ast
import importlib.metadata
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parents[1]


def test_environment_yml_declares_the_same_dependencies_as_pyproject_and_its_extras():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda_reqs = {str(Requirement(r)) for r in pip_section if not r.startswith("-e")}
    assert conda_reqs == {str(Requirement(r)) for r in declared}


def test_ci_runs_exactly_the_readme_test_command():
    [command] = [line for line in (ROOT / ".ci/run").read_text().splitlines() if "pytest" in line]
    assert f"\n{command}\n" in (ROOT / "README.md").read_text()


def _imported_distributions(sources: list[str]) -> set[str]:
    """Distributions that provide the top-level modules `sources` import (the standard library and ours left out)."""
    modules = set()
    for source in sources:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    providers = importlib.metadata.packages_distributions()
    local = {p.stem for p in (ROOT / "tests").rglob("*.py")} | {"lit_codellama"}
    unknown = modules - set(sys.stdlib_module_names) - local - set(providers)
    assert not unknown, f"imported but not installed: {unknown}"
    return {canonicalize_name(d) for m in modules - local if m in providers for d in providers[m]}


def _declared(*extras: str) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for e in extras for r in project["optional-dependencies"][e]]
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def test_every_package_the_library_imports_is_a_core_dependency():
    sources = [p.read_text() for p in (ROOT / "lit_codellama").rglob("*.py")]
    assert _imported_distributions(sources) <= _declared()


def test_every_package_the_notebooks_and_tests_import_is_declared():
    notebooks = ["\n".join(line for line in "".join(cell["source"]).splitlines() if not line.startswith(("%", "!")))
                 for nb in (ROOT / "notebooks").glob("*.ipynb") for cell in json.loads(nb.read_text())["cells"]
                 if cell["cell_type"] == "code"]
    assert _imported_distributions(notebooks) <= _declared("notebooks")
    tests = [p.read_text() for p in (ROOT / "tests").rglob("*.py")]
    assert _imported_distributions(tests) <= _declared("hf", "notebooks", "dev")


@pytest.mark.parametrize("cpu_index_reachable", [True, False])
def test_install_script_takes_cpu_torch_from_the_cpu_index_where_reachable(tmp_path, cpu_index_reachable):
    """install.sh with stand-ins for python (which logs its pip calls) and dpkg (every system package present)."""
    log = tmp_path / "calls"
    (tmp_path / "dpkg").write_text("#!/bin/sh\nexit 0\n")
    (tmp_path / "python").write_text(
        f'#!/bin/sh\nif [ "$1" = -c ]; then exit {0 if cpu_index_reachable else 1}; fi\necho "$@" >> {log}\n'
    )
    for stub in ("dpkg", "python"):
        (tmp_path / stub).chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["bash", str(ROOT / "scripts/install.sh")], env=env, capture_output=True, text=True, check=True)
    (torch,) = [line.split("==")[1] for line in (ROOT / "constraints-cpu.txt").read_text().splitlines()
                if line.startswith("torch==")]
    calls = [call for call in log.read_text().splitlines() if call.startswith("-m pip")]
    cpu_torch = f"-m pip install -q --index-url https://download.pytorch.org/whl/cpu torch=={torch}+cpu"
    assert calls == ([cpu_torch] if cpu_index_reachable else []) + [
        "-m pip install -q -c constraints-cpu.txt -e .[dev,hf,notebooks]"
    ]
    assert ("unreachable" in result.stderr) is not cpu_index_reachable


def test_the_libraries_that_decide_the_corpus_are_pinned_at_the_versions_that_built_it():
    from importlib.metadata import version

    from lit_codellama.data.corpus import CORPUS_LIBRARIES

    pins = dict(line.split("==") for line in (ROOT / "constraints-cpu.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert {"sentencepiece", "datasketch"} <= set(pins) <= {"torch", *CORPUS_LIBRARIES}
    assert all(version(pkg) == pins[pkg] for pkg in pins if pkg != "torch")  # this environment is the pinned one
