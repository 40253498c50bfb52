"""The package's layout is its architecture: layers that import only downwards, stages that never import each other
or the CLI, no import cycles, small modules that say what they hold. Every import is read from the source (also
those inside functions), so a lazy import cannot hide a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "workflow" / "ms2study"

# Rank of each subpackage: a module may import its own subpackage and subpackages of a LOWER rank only.
# Top-level modules (cli, runner, study) sit above everything.
LAYERS = {
    "core": 0,
    "io": 1, "kernels": 1,
    "library": 2,
    "encoder": 3,
    "identification": 4, "modelling": 4, "simulate": 4, "correction": 4,
    "reporting": 5,
    "stages": 6,
    "": 7,
}
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(path: Path, module: str) -> set[str]:
    """Every ms2study module ``path`` imports, at any depth (``from ms2study.x import y`` counts x.y when it is a
    module, else x)."""
    modules = _modules()
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("ms2study"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ms2study"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in modules else node.module)
    found.discard(module)
    return {m for m in found if m in modules and m != "ms2study"}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else ""


GRAPH = {m: _imports(p, m) for m, p in _modules().items()}


def test_every_subpackage_has_a_known_layer() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages <= set(LAYERS), f"subpackages without a layer: {sorted(packages - set(LAYERS))}"


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_only_go_down_the_layers(module: str) -> None:
    here = _package(module)
    bad = sorted(m for m in GRAPH[module]
                 if _package(m) != here and LAYERS[_package(m)] >= LAYERS[here])
    assert not bad, f"{module} (layer {here or 'top'}) imports {bad}, which are not below it"


def test_stages_never_import_each_other_or_the_cli() -> None:
    bad = {m: sorted(i for i in deps if i.startswith("ms2study.stages.") or i in ("ms2study.cli", "ms2study.runner"))
           for m, deps in GRAPH.items() if m.startswith("ms2study.stages.")}
    assert not {m: v for m, v in bad.items() if v}


def test_no_import_cycles() -> None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(GRAPH.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (cycle := visit(n)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(GRAPH):
        if m not in state:
            cycle = visit(m)
            assert cycle is None, " -> ".join(cycle)


@pytest.mark.parametrize("module", sorted(_modules()))
def test_modules_are_small_and_say_what_they_hold(module: str) -> None:
    path = _modules()[module]
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_LINES, f"{path.relative_to(PACKAGE)} has {len(text.splitlines())} lines"
    if path.name != "__main__.py":
        doc = ast.get_docstring(ast.parse(text))
        assert doc and len(doc) >= 40, f"{path.relative_to(PACKAGE)} lacks a module docstring saying what it holds"


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The cycle test above can fail: a two-module circle is reported."""
    saved = dict(GRAPH)
    try:
        GRAPH["ms2study.core.errors"] = {"ms2study.core.atomic"}
        GRAPH["ms2study.core.atomic"] = GRAPH["ms2study.core.atomic"] | {"ms2study.core.errors"}
        with pytest.raises(AssertionError, match="->"):
            test_no_import_cycles()
    finally:
        GRAPH.clear()
        GRAPH.update(saved)
