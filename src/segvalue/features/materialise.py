"""The one place where engine results become Arrow tables or numpy arrays."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ibis.expr.types as ir
import numpy as np
import pyarrow as pa

from segvalue.data.readers import fetch_arrow

__all__ = ["distinct_values", "numpy_columns", "to_arrow", "to_numpy"]


def to_arrow(expr: ir.Table) -> pa.Table:
    """Execute a table expression in its engine and return an Arrow table.

    Examples
    --------
    >>> import ibis
    >>> to_arrow(ibis.memtable({"a": [1, 2]})).num_rows
    2
    """
    return fetch_arrow(expr)


def to_numpy(
    expr: ir.Table, columns: Sequence[str] | None = None
) -> dict[str, np.ndarray[Any, Any]]:
    """Execute a table expression and return its columns as numpy arrays (nulls as NaN).

    Examples
    --------
    >>> import ibis
    >>> to_numpy(ibis.memtable({"a": [1, None]}))["a"]
    array([ 1., nan])
    """
    return numpy_columns(to_arrow(expr.select(*columns) if columns else expr))


def numpy_columns(
    table: pa.Table, columns: Sequence[str] | None = None
) -> dict[str, np.ndarray[Any, Any]]:
    """Columns of an Arrow table as numpy arrays (nulls of numbers as NaN).

    Numbers convert without copying when they have no nulls; a text column becomes an
    array of Python objects, so leave columns such as customer ids in Arrow when only
    the numbers are needed.

    Examples
    --------
    >>> numpy_columns(pa.table({"id": ["a", "b"], "x": [1.5, None]}), ["x"])["x"]
    array([1.5, nan])
    >>> numpy_columns(pa.table({"n": [1, 2]}))["n"]
    array([1, 2])
    """
    out: dict[str, np.ndarray[Any, Any]] = {}
    for name in columns if columns is not None else table.column_names:
        column = table.column(name)
        numeric = pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
        if numeric and column.null_count:
            out[name] = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
        elif numeric and column.num_chunks:
            # DLPack, not to_numpy: pyarrow's to_numpy imports pandas whenever it is
            # installed (0.3 s of start-up), and numbers without nulls need nothing of it.
            chunks = [np.from_dlpack(chunk) for chunk in column.chunks]
            out[name] = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
        else:
            out[name] = column.to_numpy(zero_copy_only=False)
    return out


def distinct_values(column: ir.Column, *, limit: int = 1000) -> list[Any]:
    """Sorted distinct non-null values of a column (at most ``limit``).

    Examples
    --------
    >>> import ibis
    >>> distinct_values(ibis.memtable({"c": ["b", "a", "b", None]}).c)
    ['a', 'b']
    """
    table = column.name("v").as_table()
    values = table.filter(table.v.notnull()).distinct()
    rows = to_arrow(values.order_by("v").limit(limit)).column("v").to_pylist()
    return list(rows)
