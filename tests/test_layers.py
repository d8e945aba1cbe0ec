"""The layering of docs/architecture.md, read from the code: every import between our
packages points down a floor, and no package imports itself back through another."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FLOORS = {
    "gen3d.serve": 1,
    "gen3d.model_opt": 2,
    "gen3d.aws": 2,
    "gen3d.client": 2,
    "gen3d.cost": 3,
    "gen3d.benchmarks": 3,
    "gen3d.cli": 4,
}


def package_dirs() -> dict[str, Path]:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    mapping = pyproject["tool"]["setuptools"]["package-dir"]
    return {name: REPO / folder for name, folder in mapping.items()}


def package_of(module: str) -> str | None:
    for name in FLOORS:
        if module == name or module.startswith(name + "."):
            return name
    return None


def imports(path: Path) -> set[str]:
    """Every module named by an import statement, at any depth (lazy imports count)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def package_edges() -> dict[tuple[str, str], list[str]]:
    edges: dict[tuple[str, str], list[str]] = {}
    for package, folder in package_dirs().items():
        for path in sorted(folder.rglob("*.py")):
            for module in imports(path):
                target = package_of(module)
                if target and target != package:
                    where = f"{path.relative_to(REPO)}: {module}"
                    edges.setdefault((package, target), []).append(where)
    return edges


def test_every_package_has_a_floor() -> None:
    assert set(package_dirs()) == set(FLOORS)


def test_no_import_points_up_or_sideways() -> None:
    wrong = {
        f"{a} (floor {FLOORS[a]}) -> {b} (floor {FLOORS[b]})": where
        for (a, b), where in package_edges().items()
        if FLOORS[b] >= FLOORS[a]
    }
    assert wrong == {}


def test_the_server_imports_nothing_else_of_ours() -> None:
    assert [b for (a, b) in package_edges() if a == "gen3d.serve"] == []


def test_no_unmapped_top_level_imports_of_the_old_layout() -> None:
    old = ("serve", "model_opt", "benchmarks", "scripts")
    stale = [
        f"{path.relative_to(REPO)}: {module}"
        for folder in {*package_dirs().values(), REPO / "tests", REPO / "tools"}
        for path in folder.rglob("*.py")
        if "fixtures" not in path.parts
        for module in imports(path)
        if module.split(".")[0] in old
    ]
    assert stale == []
