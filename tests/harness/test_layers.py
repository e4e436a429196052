"""The layers import downward only: cli -> harness -> (passes, backends) -> core.

Read from the source (ast), not by importing, so a function-local import counts too.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"graphopt": ROOT / "graphopt", "graphopt.backends": ROOT / "backends",
            "graphopt.passes": ROOT / "passes"}


def _modules() -> dict[str, Path]:
    modules = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([package, *parts])] = path
    return modules


MODULES = _modules()


@functools.cache
def _imports(module: str, path: Path) -> list[tuple[str, bool]]:
    """(imported module, imported inside a function) for every import in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.Import):
                found.extend((alias.name, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                found.append((base, in_function))
                found.extend((f"{base}.{alias.name}", in_function) for alias in child.names
                             if f"{base}.{alias.name}" in MODULES)
            visit(child, nested)

    visit(tree, False)
    return found


def _layer(module: str) -> str | None:
    if module == "graphopt.__main__":  # `python -m graphopt`: the CLI's entry point
        return "cli"
    for layer in ("graphopt.backends", "graphopt.passes", "graphopt.harness", "graphopt.cli"):
        if module == layer or module.startswith(layer + "."):
            return layer.rpartition(".")[2]
    return "core" if module == "graphopt" or module.startswith("graphopt.") else None


def _violations(rule) -> list[str]:
    bad = []
    for module, path in MODULES.items():
        for imported, lazy in _imports(module, path):
            reason = rule(_layer(module), _layer(imported), imported, lazy)
            if reason:
                bad.append(f"{path.relative_to(ROOT)} imports {imported}: {reason}")
    return bad


def test_the_walk_sees_every_layer():
    layers = {_layer(m) for m in MODULES}
    assert layers == {"core", "backends", "passes", "harness", "cli"}
    imports = dict(_imports("graphopt.harness.benchmark", MODULES["graphopt.harness.benchmark"]))
    assert "graphopt.backends.benchmark" in imports and "graphopt.model_io" in imports


@pytest.mark.parametrize("low", ["backends", "passes"])
def test_backends_and_passes_never_import_the_harness_or_the_cli(low):
    def rule(source, target, imported, lazy):
        return source == low and target in ("harness", "cli") and "upward import"

    assert _violations(rule) == []


def test_the_harness_never_imports_the_cli():
    def rule(source, target, imported, lazy):
        return source == "harness" and target == "cli" and "upward import"

    assert _violations(rule) == []


def test_backends_and_passes_never_import_each_other():
    def rule(source, target, imported, lazy):
        return {source, target} == {"backends", "passes"} and "sideways import"

    assert _violations(rule) == []


def test_core_never_imports_a_layer_above_it():
    def rule(source, target, imported, lazy):
        return (source == "core" and target in ("backends", "passes", "harness", "cli")
                and "upward import")

    assert _violations(rule) == []


def test_backends_never_reach_into_core_from_inside_a_function():
    # Core types and helpers at module top are fine; a function that imports core to load
    # models, make inputs or run the oracle is orchestration and belongs in the harness.
    def rule(source, target, imported, lazy):
        return source == "backends" and target == "core" and lazy and "lazy core import"

    assert _violations(rule) == []
