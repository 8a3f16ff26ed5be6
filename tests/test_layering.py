"""The package's floors: each module imports only from its own room or the floors below, and no modules import each
other in a circle (function-level imports included: a lazy import hides a circle, it does not remove it)."""

import ast
import graphlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "lit_codellama"

# Bottom to top. A room is a subpackage; "foundation" is every top-level module plus data/.
FLOORS = [
    {"foundation"},
    {"evaluation"},
    {"training", "instruct"},  # siblings: neither imports the other
    {"studies"},
    {"dispatcher"},  # `python -m lit_codellama` and its command table
]
ROOMS = {"data": "foundation", "evaluation": "evaluation", "training": "training", "instruct": "instruct",
         "studies": "studies"}
DISPATCHER = {"lit_codellama.cli", "lit_codellama.__main__"}


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("lit_codellama", *path.relative_to(PACKAGE).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def room(module: str) -> str:
    if module in DISPATCHER:
        return "dispatcher"
    parts = module.split(".")
    return ROOMS.get(parts[1], "foundation") if len(parts) > 1 else "foundation"


def floor(module: str) -> int:
    return next(i for i, rooms in enumerate(FLOORS) if room(module) in rooms)


def imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that `module` imports anywhere in its file (`from pkg import submodule` names it)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names}
    return {name for name in found if name in known and name != module}


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {module: imports(module, path, set(found)) for module, path in found.items()}


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def test_rooms_are_what_the_layering_expects():
    assert room("lit_codellama.model") == room("lit_codellama.data.packing") == room("lit_codellama.data") == "foundation"
    assert room("lit_codellama.evaluation.cli") == room("lit_codellama.evaluation") == "evaluation"
    assert room("lit_codellama.studies.runner") == "studies"
    assert room("lit_codellama.cli") == "dispatcher"
    assert {"lit_codellama.model", "lit_codellama.evaluation.cli", "lit_codellama.training.module"} <= set(modules())


def test_imports_go_down_or_stay_in_their_room():
    upward = sorted(
        f"{source} ({room(source)}) imports {target} ({room(target)})"
        for source, targets in import_graph().items()
        for target in targets
        if room(target) != room(source) and floor(target) >= floor(source)
    )
    assert upward == []


def test_no_modules_import_each_other_in_a_circle():
    try:
        graphlib.TopologicalSorter(import_graph()).prepare()
    except graphlib.CycleError as error:
        pytest.fail(f"import circle: {' -> '.join(error.args[1])}")


@pytest.mark.parametrize("module", ["lit_codellama.evaluation.cli", "lit_codellama.evaluation.likelihood"])
def test_the_evaluation_suite_needs_no_upper_floor(module):
    upper = {m for m in reachable(import_graph(), module) if room(m) in ("training", "instruct", "studies")}
    assert upper == set()
