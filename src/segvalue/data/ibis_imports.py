"""Import only the SQL compiler of the engine in use, not Ibis's twenty.

``ibis.backends.sql.compilers`` is a package whose ``__init__`` imports the compiler of
every SQL dialect Ibis supports (Athena, BigQuery, ClickHouse, ... Trino) and, through
them, builds sqlglot's tokenizer tables for each dialect: 0.1-0.2 s of every command that
opens an engine or the results store, spent on dialects segvalue never uses. Each backend
reaches its compiler as an attribute of that package (``sc.duckdb.compiler``), and
``ibis.to_sql`` by dialect name, so a package module that imports a compiler module when
it is first asked for serves them all. Ibis 12 is the version this was written against;
should the package stop looking like that, nothing is changed and Ibis imports as usual.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType
from typing import Any

_PACKAGE = "ibis.backends.sql.compilers"


def defer_sql_compilers() -> None:
    """Make ``ibis.backends.sql.compilers`` import each dialect's compiler on first use.

    Safe to call more than once; does nothing when the package is imported already.
    ``from ibis.backends.sql.compilers import DuckDBCompiler`` and
    ``ibis.backends.sql.compilers.postgres`` work as before, importing that one module.

    Examples
    --------
    >>> defer_sql_compilers()
    >>> import ibis
    >>> ibis.duckdb.connect().name
    'duckdb'
    >>> import ibis.backends.sql.compilers as sc
    >>> sc.PostgresCompiler.__name__
    'PostgresCompiler'
    """
    if _PACKAGE in sys.modules:
        return
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations or _PACKAGE in sys.modules:
        return
    package = importlib.util.module_from_spec(spec)
    locations = list(spec.submodule_search_locations)

    def compiler_module(name: str) -> ModuleType | None:
        """The submodule ``name`` (``duckdb``) or that of ``DuckDBCompiler``, if one exists."""
        module = name.lower().removesuffix("compiler") if name.endswith("Compiler") else name
        if not module.isidentifier() or module.startswith("_"):
            return None
        if importlib.util.find_spec(f"{_PACKAGE}.{module}") is None:
            return None
        return importlib.import_module(f"{_PACKAGE}.{module}")

    def attribute(name: str) -> Any:
        module = compiler_module(name)
        if module is None:
            raise AttributeError(f"module {_PACKAGE!r} has no attribute {name!r}")
        return getattr(module, name) if name.endswith("Compiler") else module

    package.__getattr__ = attribute  # type: ignore[method-assign]
    package.__path__ = locations
    sys.modules[_PACKAGE] = package
