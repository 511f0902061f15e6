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
    # The results store knows the database and the data layer's safety, never models or
    # segments.
    "store": {"errors", "units", "config", "data", "store", "__init__"},
    # Scoring one customer applies what a run learned: features' conventions, the models,
    # the segment rules.
    "scoring": {"errors", "units", "config", "features", "models", "segments", "valuation"},
    # Real-time events: checked with the data layer's rules, scored by a run's scorer.
    "realtime": {"errors", "units", "config", "data", "scoring"},
    # One package: its stage modules import each other.
    "pipeline": {
        "pipeline",
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
        "scoring",
        "measurement",
        "activation",
        "__init__",
    },
    # Measurement and activation sit beside the pipeline: they read stored runs.
    "measurement": {
        "errors",
        "units",
        "config",
        "data",
        "features",
        "models",
        "segments",
        "economics",
        "store",
        "measurement",
    },
    "activation": {
        "errors",
        "units",
        "config",
        "data",
        "features",
        "segments",
        "economics",
        "store",
        "measurement",
        "activation",
    },
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
        "scoring",
        "realtime",
        "pipeline",
        "measurement",
        "activation",
        "__init__",
    },
    # The faces: thin, over Project.
    # segvalue serve runs the API's app: a face may import another face (STYLE.md).
    "cli": {
        "errors",
        "units",
        "config",
        "pipeline",
        "project",
        "cli",
        "data",
        "api",
        "web",
        "__init__",
    },
    "api": {"errors", "units", "config", "project", "api", "__init__"},
    # The static report writes its file through data/ and protects the run's inputs.
    "web": {"errors", "units", "config", "project", "data", "api", "web", "__init__"},
    "__init__": {
        "errors",
        "units",
        "config",
        "project",
        "pipeline",
        "models",
        "store",
        "scoring",
        "__init__",
    },
    "__main__": {"cli"},
}
# Packages that may open files and databases themselves.
IO_PACKAGES = {"data", "store"}
# Libraries models/ may not import: it is pure numpy / scipy.
NOT_IN_MODELS = (
    "ibis",
    "pandas",
    "polars",
    "pyarrow",
    "duckdb",
    "psycopg",
    "requests",
    "httpx",
    "urllib",
    "socket",
    "http",
)
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
    assert package in ALLOWED, f"{package} is not in the layering contract: add it to ALLOWED"
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
    if package in IO_PACKAGES:
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


@pytest.mark.parametrize(
    "path", sorted((SRC / "models").rglob("*.py")), ids=lambda p: str(p.relative_to(SRC))
)
def test_models_are_pure_numpy_scipy(path: Path) -> None:
    banned = {
        name for name in _imports(ast.parse(path.read_text())) if name.startswith(NOT_IN_MODELS)
    }
    assert not banned, f"{path.name} imports {banned}"


def test_layering_test_sees_the_packages() -> None:
    packages = {_package(p) for p in _modules()}
    assert {"data", "features", "cli", "config", "pipeline", "project"} <= packages
