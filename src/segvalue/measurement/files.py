"""Attribution inputs read from files (the data layer reads them): ChannelAttribution's
path table, optionally split by a column such as the customers' segment."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segvalue.errors import DataValidationError
from segvalue.measurement.attribution import (
    MODELS,
    Attribution,
    Paths,
    markov,
    rule_based,
    shapley,
)

__all__ = ["PathColumns", "attribute", "read_paths"]


@dataclass(frozen=True)
class PathColumns:
    """The columns of a path table (ChannelAttribution's names by default); ``value`` and
    ``nulls`` may be absent from the file (0 then)."""

    path: str = "path"
    conversions: str = "total_conversions"
    value: str = "total_conversion_value"
    nulls: str = "total_null"


def read_paths(
    file: Path,
    *,
    columns: PathColumns = PathColumns(),
    sep: str = ">",
    by: str | None = None,
    delimiter: str = ",",
) -> dict[str | None, Paths]:
    """The paths of a CSV / text or Parquet path table: all of them under ``None``, or
    per value of the column ``by`` (in order of first appearance).

    Raises
    ------
    DataValidationError
        A missing column (naming the file and the columns it has), or a count or value
        that is not a number >= 0 (naming the file, line or row, column and value).

    Examples
    --------
    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "paths.csv"
    >>> _ = f.write_text("path,total_conversions,total_null\\nC1 > C2 > C3,1,0\\nC1,0,1\\n")
    >>> read_paths(f)[None].channels
    ('C1', 'C2', 'C3')
    """
    import ibis

    from segvalue.config import SourceConfig
    from segvalue.data.readers import read_file

    source = SourceConfig(path=str(file), csv={"delimiter": delimiter})
    con = ibis.duckdb.connect()
    try:
        table, word, offset = read_file(con, file, source, label=str(file))
        present = list(table.columns)
        wanted = [columns.path, columns.conversions] + ([by] if by else [])
        for name in wanted:
            if name not in present:
                raise DataValidationError(
                    f"{file}: no column {name!r} (it has {', '.join(present)})",
                    fix="name the path table's columns with --path-col, --conversions-col, "
                    "--value-col, --nulls-col (or --by)",
                    parameter=name,
                )
        rows = table.to_pyarrow().to_pylist()
    finally:
        con.disconnect()
    first = 1 if offset is None else offset
    groups: dict[str | None, list[tuple[str, float, float, float]]] = {}
    for i, row in enumerate(rows):
        where = f"{file}, {word} {first + i}"
        numbers = [
            _number(row.get(name), where, name, absent=name != columns.conversions)
            for name in (columns.conversions, columns.value, columns.nulls)
        ]
        key = None if by is None else ("" if row[by] is None else str(row[by]))
        text = row[columns.path]
        if text is None or not str(text).strip():
            raise DataValidationError(
                f"{where}: column {columns.path!r} is empty",
                fix="give every row a path such as 'search > email'",
                parameter=columns.path,
            )
        groups.setdefault(key, []).append((str(text), *numbers))  # type: ignore[arg-type]
    if not groups:
        raise DataValidationError(f"{file} holds no path", fix="give at least one row")
    out: dict[str | None, Paths] = {}
    for key, members in groups.items():
        out[key] = Paths.parse(
            [m[0] for m in members],
            [m[1] for m in members],
            value=[m[2] for m in members],
            nulls=[m[3] for m in members],
            sep=sep,
        )
    return out


def _number(raw: Any, where: str, column: str, *, absent: bool) -> float:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        if absent:
            return 0.0
        raise DataValidationError(
            f"{where}: column {column!r} is empty", fix="give a count >= 0", parameter=column
        )
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise DataValidationError(
            f"{where}: column {column!r} holds {str(raw)[:40]!r}, not a number >= 0",
            fix="give counts and values as plain numbers >= 0 (a '.' decimal mark)",
            parameter=column,
        )
    return value


def attribute(paths: Paths, model: str, *, order: int = 1, **options: Any) -> Attribution:
    """One model's attribution (``MODELS``): ``order`` for markov, ``value_function``
    for shapley, ``direct`` and ``position`` for the rule-based ones.

    Examples
    --------
    >>> p = Paths.parse(["C1 > C2 > C3", "C1", "C2 > C3"], [1, 0, 0], nulls=[0, 1, 1])
    >>> attribute(p, "last").to_dict()["channels"]["C3"]["conversions"]
    1.0
    """
    if model == "markov":
        return markov(paths, order=order)
    if model == "shapley":
        return shapley(paths, **options)
    if model not in MODELS:
        raise DataValidationError(
            f"unknown attribution model {model!r}",
            fix=f"use one of {', '.join(MODELS)}",
            parameter="model",
        )
    return rule_based(paths, model, **options)
