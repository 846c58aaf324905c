"""The house's layering, checked on the source: the shared core imports neither shell, the server (``proxy``) and
the workers (``jobs``) never import each other, and only the program (``grenier``: the CLI and the wiring) knows
both. Every import counts, at module level or inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: What each package may import of the project's own packages.
ALLOWED = {
    "core": {"core"},
    "proxy": {"core", "proxy"},
    "jobs": {"core", "jobs"},
    "grenier": {"core", "proxy", "jobs", "grenier"},
}


def _imports(path: Path, package: str) -> set[str]:
    """The project packages a module imports (relative imports resolve to its own package)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            found.add(package if node.level else (node.module or "").split(".")[0])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
    return found & set(ALLOWED)


MODULES = sorted((pkg, path) for pkg in ALLOWED for path in (ROOT / pkg).glob("*.py"))


@pytest.mark.parametrize(("package", "path"), MODULES, ids=[f"{p}/{m.name}" for p, m in MODULES])
def test_module_imports_only_what_its_layer_may(package: str, path: Path) -> None:
    forbidden = _imports(path, package) - ALLOWED[package]
    assert not forbidden, f"{package}/{path.name} imports {sorted(forbidden)}: {package} may import {ALLOWED[package]}"


def test_every_package_is_checked() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert packages == set(ALLOWED)
    assert len(MODULES) > 30
