"""The import graph follows STYLE.md: data flows one way, faces are the only top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "segvalue"

# package -> segvalue packages/modules it may import
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "units": {"errors"},
    "config": {"errors", "units"},
    "models": {"errors", "units", "models"},
    "data": {"errors", "units", "config", "data"},
    # features read what data/ loaded and fetch results through its engine I/O (readers).
    "features": {"errors", "units", "data", "features"},
    "valuation": {"errors", "units", "models"},
    "segments": {"errors", "units", "config", "features", "segments"},
    "economics": {"errors", "units", "config", "features", "segments", "economics"},
    "pipeline": {
        "errors",
        "units",
        "config",
        "data",
        "features",
        "models",
        "valuation",
        "segments",
        "economics",
    },
    # Project, the one object every face uses, may use everything below the faces.
    "project": {
        "errors",
        "units",
        "config",
        "data",
        "features",
        "models",
        "valuation",
        "segments",
        "economics",
        "store",
        "pipeline",
    },
    # The package's public API names Project and what it returns (imported lazily).
    "__init__": {
        "errors",
        "config",
        "models",
        "pipeline",
        "project",
    },
    "cli": {"errors", "units", "config", "pipeline", "project", "cli", "data", "__init__"},
}
FILE_IO_CALLS = ("open", "read_text", "write_text", "read_bytes", "write_bytes")
FILE_IO_MODULES = ("duckdb", "pyarrow.parquet", "pyarrow.csv", "pandas", "polars")


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py"))


def _package(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _imports(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_down(path: Path) -> None:
    package = _package(path)
    if package not in ALLOWED:
        return
    ours = {
        name.split(".")[1]
        for name in _imports(ast.parse(path.read_text()))
        if name.startswith("segvalue.")
    }
    assert ours <= ALLOWED[package], f"{path.name} imports {ours - ALLOWED[package]}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_only_data_opens_files_and_databases(path: Path) -> None:
    package = _package(path)
    tree = ast.parse(path.read_text())
    if package == "data":
        return
    assert not {m for m in _imports(tree) if m.startswith(FILE_IO_MODULES)}, path.name
    calls = {
        node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
    }
    io = calls & set(FILE_IO_CALLS)
    # config.py reads segvalue.yaml itself: the configuration is not data.
    if package == "config":
        io -= {"read_text"}
    assert not io, f"{path.name} does file I/O: {io}"


def test_layering_test_sees_the_packages() -> None:
    packages = {_package(p) for p in _modules()}
    assert {"data", "features", "cli", "config", "pipeline", "project"} <= packages
